import Foundation
import XCTest
import DiffusionTensor

final class TensorTests: XCTestCase {
    func testShapeScalarMismatchThrows() {
        XCTAssertThrowsError(try Tensor(shape: [2, 3], scalars: [1, 2, 3]))
    }

    func testCopyOnWrite() throws {
        let a = try Tensor(shape: [2], scalars: [1, 2])
        var b = a
        b[flat: 0] = 5
        XCTAssertEqual(a.scalars, [1, 2])
        XCTAssertEqual(b.scalars, [5, 2])
    }

    func testReshapeInfersAndValidates() throws {
        let a = Tensor(zeros: [2, 3, 4])
        XCTAssertEqual(try a.reshaped([6, -1]).shape, [6, 4])
        XCTAssertThrowsError(try a.reshaped([5, -1]))
        XCTAssertThrowsError(try a.reshaped([2, 2]))
    }

    func testHalfRoundTrip() {
        for v: Float in [0, 1, -2.5, 65504, 6.1035156e-05, 5.9604645e-08, 0.1, -0.3333] {
            let h = HalfConversion.half(fromFloat: v)
            let back = HalfConversion.float(fromHalf: h)
            XCTAssertEqual(back, v, accuracy: abs(v) * 1e-3 + 1e-7)
        }
        XCTAssertEqual(HalfConversion.half(fromFloat: 1.0), 0x3C00)
        XCTAssertEqual(HalfConversion.float(fromBFloat16: HalfConversion.bfloat16(fromFloat: 3.0)), 3.0)
    }

    /// The bulk conversion (F16C where the CPU has it, split across threads) gives every one of the 65,536
    /// halves exactly the scalar widening's bits, subnormals and infinities included (NaN stays NaN of the same
    /// sign: F16C quiets signalling NaNs), from an odd byte offset (as a tensor may sit in a file mapping) and
    /// across chunk boundaries.
    func testBulkHalfConversionMatchesScalarForEveryHalf() {
        let count = 65_536 * 5 + 3  // several threads' chunks, and a tail shorter than a vector
        var bytes = [UInt8](repeating: 0, count: 2 * count + 1)
        for i in 0..<count {
            let h = UInt16(truncatingIfNeeded: i &* 40_503)
            bytes[1 + 2 * i] = UInt8(h & 0xFF)
            bytes[2 + 2 * i] = UInt8(h >> 8)
        }
        var out = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { raw in
            out.withUnsafeMutableBufferPointer { HalfConversion.convert(raw.baseAddress! + 1, dtype: .float16, count: count, into: $0.baseAddress!) }
        }
        for i in 0..<count {
            let h = UInt16(bytes[1 + 2 * i]) | UInt16(bytes[2 + 2 * i]) << 8
            let expected = HalfConversion.float(fromHalf: h)
            let same = expected.isNaN ? out[i].isNaN && out[i].sign == expected.sign : out[i].bitPattern == expected.bitPattern
            if !same {
                XCTFail(String(format: "half 0x%04x: got 0x%08x, expected 0x%08x", h, out[i].bitPattern, expected.bitPattern))
                return
            }
        }
    }

    /// The vectorised activations and softmax stay exact at the extremes (overflow, underflow, -inf).
    func testActivationsAndSoftmaxAtExtremes() throws {
        let xs: [Float] = [-1e4, -100, -88, -87, -20, -3, -1e-6, 0, 1e-6, 3, 20, 87, 88, 100, 1e4, 0.5, -0.5, 7]
        let t = try Tensor(shape: [1, xs.count], scalars: xs)
        let silu = t.silu().scalars, gelu = t.gelu().scalars
        for (i, x) in xs.enumerated() {
            let refSilu = Double(x) / (1 + Foundation.exp(-Double(x)))
            let refGelu = 0.5 * Double(x) * (1 + Foundation.erf(Double(x) / 2.0.squareRoot()))
            XCTAssertEqual(Double(silu[i]), refSilu, accuracy: 2e-6 * max(1, abs(refSilu)), "silu(\(x))")
            XCTAssertEqual(Double(gelu[i]), refGelu, accuracy: 2e-6 * max(1, abs(refGelu)), "gelu(\(x))")
            XCTAssertTrue(silu[i].isFinite && gelu[i].isFinite, "\(x)")
        }
        let row = try Tensor(shape: [1, 20], scalars: [-.infinity, 1000, -1000, 0] + [Float](repeating: -.infinity, count: 16))
        let p = row.softmax().scalars
        XCTAssertEqual(p[1], 1, accuracy: 1e-7)
        XCTAssertEqual(p.reduce(0, +), 1, accuracy: 1e-6)
        XCTAssertEqual(p[0], 0)
        let masked = try Tensor(shape: [1, 17], scalars: [Float](repeating: -.infinity, count: 17)).softmax().scalars
        XCTAssertEqual(masked, [Float](repeating: 0, count: 17))
    }
}
