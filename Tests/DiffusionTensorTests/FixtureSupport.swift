import Foundation
import XCTest
import DiffusionTensor

/// Reads the fp32 safetensors fixtures written by Scripts/reference (a minimal parser, so these tests
/// do not depend on the library's own reader, which has its own tests).
struct Fixtures {
    let tensors: [String: Tensor]

    init(_ relativePath: String) throws {
        guard let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            throw TensorError.badFile(file: "Fixtures", detail: "test resources missing")
        }
        let data = try Data(contentsOf: root.appendingPathComponent(relativePath))
        let headerLength = data.prefix(8).enumerated().reduce(0) { $0 | (Int($1.element) << (8 * $1.offset)) }
        let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + headerLength))) as? [String: Any] ?? [:]
        var out: [String: Tensor] = [:]
        for (name, value) in header where name != "__metadata__" {
            guard let entry = value as? [String: Any], let shape = entry["shape"] as? [Int],
                  let offsets = entry["data_offsets"] as? [Int], entry["dtype"] as? String == "F32" else { continue }
            let start = 8 + headerLength + offsets[0], end = 8 + headerLength + offsets[1]
            out[name] = try data.subdata(in: start..<end).withUnsafeBytes { try Tensor(shape: shape, dtype: .float32, bytes: $0) }
        }
        tensors = out
    }

    subscript(_ name: String) -> Tensor {
        get throws {
            guard let t = tensors[name] else { throw TensorError.invalidArgument("fixture tensor \(name) missing") }
            return t
        }
    }
}

/// Asserts `max|actual - expected| <= tolerance * max(max|expected|, 1e-6)`: relative to the tensor's scale,
/// so elements near zero are judged against the tensor's magnitude, as is usual for fp32 kernel parity.
func assertClose(_ actual: Tensor, _ expected: Tensor, tolerance: Float = 1e-5, _ message: String = "",
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.shape, expected.shape, "shape \(message)", file: file, line: line)
    guard actual.shape == expected.shape else { return }
    let a = actual.scalars, e = expected.scalars
    var maxDiff: Float = 0, maxRef: Float = 0
    for i in 0..<a.count {
        maxDiff = max(maxDiff, abs(a[i] - e[i]))
        maxRef = max(maxRef, abs(e[i]))
        if a[i].isNaN != e[i].isNaN { maxDiff = .infinity }
    }
    let rel = maxDiff / max(maxRef, 1e-6)
    XCTAssertLessThanOrEqual(rel, tolerance, "relative error \(rel) \(message)", file: file, line: line)
}
