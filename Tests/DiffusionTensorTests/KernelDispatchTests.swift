import DiffusionTensor
import XCTest

/// The AVX-512 kernels (CKernels) against the portable Swift SIMD code they replace, on awkward values:
/// both must agree to float rounding, including overflow, underflow, masked rows and NaN.
final class KernelDispatchTests: XCTestCase {
    override func tearDown() {
        KernelDispatch.native = Self.nativeAvailable
    }

    static let nativeAvailable = KernelDispatch.native

    func values(_ n: Int, seed: UInt64) -> [Float] {
        var state = seed | 1
        var out: [Float] = []
        for i in 0..<n {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            let u = Float(state >> 40) / Float(1 << 24) * 2 - 1
            switch i % 97 {
            case 0: out.append(-100)   // exp underflow
            case 1: out.append(95)     // exp overflow
            case 2: out.append(-.infinity)
            default: out.append(u * 12)
            }
        }
        return out
    }

    func both(_ body: () throws -> Tensor) rethrows -> (native: Tensor, portable: Tensor) {
        KernelDispatch.native = Self.nativeAvailable
        let native = try body()
        KernelDispatch.native = false
        let portable = try body()
        KernelDispatch.native = Self.nativeAvailable
        return (native, portable)
    }

    func assertAgree(_ a: Tensor, _ b: Tensor, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.shape, b.shape, what, file: file, line: line)
        for (i, (x, y)) in zip(a.scalars, b.scalars).enumerated() {
            if x.isNaN || y.isNaN {
                XCTAssertTrue(x.isNaN && y.isNaN, "\(what)[\(i)]: \(x) vs \(y)", file: file, line: line)
                continue
            }
            if x.isInfinite || y.isInfinite { XCTAssertEqual(x, y, "\(what)[\(i)]", file: file, line: line); continue }
            XCTAssertEqual(x, y, accuracy: 2e-6 * max(1, abs(y)), "\(what)[\(i)]", file: file, line: line)
        }
    }

    func testActivationsAgree() throws {
        // Lengths that are not multiples of 16 exercise the masked tails.
        let x = try Tensor(shape: [3, 1001], scalars: values(3003, seed: 5))
        for (name, act) in [("silu", Activation.silu), ("quick_gelu", .quickGelu), ("gelu", .gelu), ("gelu_tanh", .geluTanh)] {
            let r = both { x.applying(act) }
            assertAgree(r.native, r.portable, name)
        }
        let nan = try Tensor(shape: [17], scalars: [Float.nan] + values(16, seed: 9))
        let r = both { nan.silu() }
        XCTAssertTrue(r.native.scalars[0].isNaN && r.portable.scalars[0].isNaN)
    }

    func testSoftmaxAndAttentionAgree() throws {
        for n in [1, 15, 16, 77, 4096, 4099] {
            let x = try Tensor(shape: [5, n], scalars: values(5 * n, seed: UInt64(n)).map { $0 == -.infinity ? -30 : $0 })
            let r = both { x.softmax() }
            assertAgree(r.native, r.portable, "softmax \(n)")
        }
        let masked = try Tensor(shape: [2, 20], scalars: [Float](repeating: -.infinity, count: 20) + values(20, seed: 3).map { $0 == -.infinity ? 0 : $0 })
        let m = both { masked.softmax() }
        assertAgree(m.native, m.portable, "masked row")
        XCTAssertEqual(Array(m.native.scalars[0..<20]), [Float](repeating: 0, count: 20))
    }

    /// Native attention is the fused kernel (online softmax over key tiles), portable the blocked GEMMs: two
    /// summation orders, so they are held to the fp32 parity bound (1e-5 of the largest value) rather than
    /// to rounding. Head dims 40/80/160 with 77 keys, odd counts, causal masks spanning key tiles.
    func testAttentionAgrees() throws {
        func tensor(_ shape: [Int], seed: UInt64) throws -> Tensor {
            try Tensor(shape: shape, scalars: values(shape.reduce(1, *), seed: seed).map { $0.isFinite ? $0 / 4 : 0 })
        }
        for (b, lq, lk, heads, d, causal) in [(2, 300, 77, 4, 16, false), (2, 300, 300, 2, 32, true), (1, 101, 77, 8, 40, false),
                                              (1, 130, 77, 2, 80, false), (1, 50, 77, 2, 160, false), (1, 263, 263, 2, 40, true)] {
            let q = try tensor([b, lq, heads * d], seed: UInt64(lq * d))
            let k = causal ? q : try tensor([b, lk, heads * d], seed: UInt64(lk * d + 1))
            let v = causal ? q : try tensor([b, lk, heads * d], seed: UInt64(lk * d + 2))
            let r = try both { try Attention.scaledDotProduct(query: q, key: k, value: v, heads: heads, causal: causal) }
            assertClose(r.native, r.portable, "attention \(lq)x\(lk) heads \(heads)x\(d) causal \(causal)")
        }
    }

    func testNormsAgree() throws {
        // 33 and 48 channels leave masked tails; 1000 pixels leave a partial run of 32.
        for (channels, groups) in [(33, 3), (48, 16), (320, 32)] {
            let x = try Tensor(shape: [2, 10, 100, channels], scalars: values(2 * 1000 * channels, seed: UInt64(channels)).map { $0.isFinite && abs($0) < 50 ? $0 : 0.5 })
            let gamma = try Tensor(shape: [channels], scalars: values(channels, seed: 3).map { $0.isFinite && abs($0) < 50 ? $0 : 1 })
            let beta = try Tensor(shape: [channels], scalars: values(channels, seed: 4).map { $0.isFinite && abs($0) < 50 ? $0 : 0 })
            // Same arithmetic in the same order: bit-identical without an activation.
            let plain = try both { try x.groupNorm(groups: groups, gamma: gamma, beta: beta, eps: 1e-5) }
            XCTAssertEqual(plain.native.scalars, plain.portable.scalars, "group norm, \(channels) channels")
            let silu = try both { try x.groupNorm(groups: groups, gamma: gamma, beta: beta, eps: 1e-5, activation: .silu) }
            assertAgree(silu.native, silu.portable, "group norm + silu, \(channels) channels")
            let layer = try both { try x.layerNorm(gamma: gamma, beta: beta, eps: 1e-5) }
            assertAgree(layer.native, layer.portable, "layer norm, \(channels) channels")
            let bare = try both { try x.layerNorm(gamma: nil, beta: nil, eps: 1e-5) }
            assertAgree(bare.native, bare.portable, "layer norm without affine, \(channels) channels")
        }
    }
}
