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
}
