import Foundation
import XCTest
import StableDiffusion

/// Reads the safetensors fixtures written by Scripts/reference (F32, F16 and I64), with a minimal parser
/// so these tests do not depend on the library's own safetensors reader.
struct CLIPFixtureFile {
    let tensors: [String: Tensor]
    let integers: [String: (shape: [Int], values: [Int])]

    static func url(_ relativePath: String) throws -> URL {
        guard let root = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            throw TensorError.badFile(file: "Fixtures", detail: "test resources missing")
        }
        return root.appendingPathComponent(relativePath)
    }

    init(_ relativePath: String) throws {
        let path = try Self.url(relativePath)
        let data = try Data(contentsOf: path)
        guard data.count >= 8 else { throw TensorError.badFile(file: path.path, detail: "truncated") }
        let headerLength = data.prefix(8).enumerated().reduce(0) { $0 | (Int($1.element) << (8 * $1.offset)) }
        let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + headerLength))) as? [String: Any] ?? [:]
        var floats: [String: Tensor] = [:], ints: [String: (shape: [Int], values: [Int])] = [:]
        for (name, value) in header where name != "__metadata__" {
            guard let entry = value as? [String: Any], let shape = entry["shape"] as? [Int],
                  let offsets = entry["data_offsets"] as? [Int], let dtype = entry["dtype"] as? String else {
                throw TensorError.badFile(file: path.path, detail: "bad header entry \(name)")
            }
            let bytes = data.subdata(in: (8 + headerLength + offsets[0])..<(8 + headerLength + offsets[1]))
            switch dtype {
            case "F32", "F16":
                floats[name] = try bytes.withUnsafeBytes {
                    try Tensor(shape: shape, dtype: dtype == "F32" ? .float32 : .float16, bytes: $0)
                }
            case "I64":
                let values = bytes.withUnsafeBytes { raw in
                    (0..<(raw.count / 8)).map { Int(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))) }
                }
                ints[name] = (shape, values)
            default:
                throw TensorError.badFile(file: path.path, detail: "unsupported dtype \(dtype) for \(name)")
            }
        }
        tensors = floats
        integers = ints
    }

    /// Every tensor of the file as fp32 (integer ones too, as a checkpoint's `position_ids` buffer).
    var dictionary: TensorDictionary {
        var all = tensors
        for (name, entry) in integers {
            all[name] = try? Tensor(shape: entry.shape, scalars: entry.values.map { Float($0) })
        }
        return TensorDictionary(all, description: "fixture")
    }

    subscript(_ name: String) -> Tensor {
        get throws {
            guard let t = tensors[name] else { throw TensorError.invalidArgument("fixture tensor \(name) missing") }
            return t
        }
    }

    /// An I64 tensor of shape [rows, columns] as rows of ids.
    func idRows(_ name: String) throws -> [[Int]] {
        guard let entry = integers[name], entry.shape.count == 2 else {
            throw TensorError.invalidArgument("fixture id matrix \(name) missing")
        }
        let columns = entry.shape[1]
        return (0..<entry.shape[0]).map { Array(entry.values[($0 * columns)..<(($0 + 1) * columns)]) }
    }
}

/// Asserts `max|actual - expected| <= tolerance * max|expected|` (the error relative to the tensor's scale).
func assertCLIPClose(_ actual: Tensor, _ expected: Tensor, tolerance: Float = 1e-4, _ message: String = "",
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
    // CLIP_PRINT_ERRORS=1 swift test ... prints every measured error (for reports), not only failures.
    if ProcessInfo.processInfo.environment["CLIP_PRINT_ERRORS"] != nil { print("relative error \(rel) \(message)") }
    XCTAssertLessThanOrEqual(rel, tolerance, "relative error \(rel) \(message)", file: file, line: line)
}
