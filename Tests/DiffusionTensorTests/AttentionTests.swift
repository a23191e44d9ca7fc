import DiffusionTensor
import XCTest

/// The fused attention kernels against torch's scaled_dot_product_attention on the shapes that exercise
/// their tiling (Scripts/reference/gen_op_fixtures.py): SD's head dims, 77 prompt keys, token counts off
/// the 48-query and 128-key tiles, causal masks across key tiles.
final class AttentionTests: XCTestCase {
    static let fixtures = Result { try Fixtures("ops/ops.safetensors") }
    func fx(_ name: String) throws -> Tensor { try Self.fixtures.get()[name] }

    static let cases: [(name: String, heads: Int, causal: Bool)] = [
        ("attn_d40_cross77", 2, false), ("attn_d40_self_tiles", 1, false), ("attn_d64_causal77", 2, true),
        ("attn_d64_causal_tiles", 1, true), ("attn_d80_self", 1, false), ("attn_d160_cross77", 2, false),
        ("attn_d160_cross140", 2, false),
    ]

    func attention(_ name: String, heads: Int, causal: Bool, precision: ComputePrecision = .fp32) throws -> Tensor {
        try Attention.scaledDotProduct(query: fx("\(name).q"), key: fx("\(name).k"), value: fx("\(name).v"),
                                       heads: heads, causal: causal, precision: precision)
    }

    func testFloat32MatchesTorch() throws {
        let native = KernelDispatch.native
        defer { KernelDispatch.native = native }
        for (name, heads, causal) in Self.cases {
            for path in Set([native, false]) {
                KernelDispatch.native = path
                assertClose(try attention(name, heads: heads, causal: causal), try fx("\(name).y"), "\(name) native \(path)")
            }
        }
    }

    /// Largest |a - b| over the largest |value|: a weighted average of the values moves by at most
    /// (relative weight error) x max|value|, which is what bf16 rounding bounds.
    func errorOverValues(_ a: Tensor, _ b: Tensor, values: Tensor) -> Float {
        let scale = values.scalars.reduce(0) { max($0, abs($1)) }
        return zip(a.scalars, b.scalars).reduce(0) { max($0, abs($1.0 - $1.1)) } / scale
    }

    func testBFloat16() throws {
        guard Attention.bfloat16Available else {
            XCTAssertThrowsError(try attention("attn_d40_cross77", heads: 2, causal: false, precision: .bf16)) {
                XCTAssertTrue("\($0)".contains("AVX512-BF16"), "\($0)")
            }
            throw XCTSkip("this CPU has no AVX512-BF16")
        }
        // Both kernels where the CPU has AMX (each against torch, and the two against each other below).
        let kernels: [Attention.BF16Kernel] = Attention.amxAvailable ? [.amx, .avx512] : [.avx512]
        defer { Attention.bf16KernelOverride = nil }
        for kernel in kernels {
          Attention.bf16KernelOverride = kernel
          for (name, heads, causal) in Self.cases {
            let y = try attention(name, heads: heads, causal: causal, precision: .bf16)
            let values = try fx("\(name).v")
            // bf16 keeps 8 significant bits (unit roundoff 2^-9 = 0.2%). Against torch on the same
            // bf16-rounded inputs, what remains is the kernel's own rounding of the scaled queries and of the
            // softmax weights, each at most 2^-9 relative: 2^-8 of the values' scale bounds it.
            let own = errorOverValues(y, try fx("\(name).y_bf16in"), values: values)
            XCTAssertLessThan(own, 1.0 / 256, "\(name) against torch on bf16 inputs")
            // (Measured at most 0.075% on these cases.) Against fp32, the rounded inputs also move each score
            // by about 2^-9 |q||k| scale, a few 0.1% of a weight: measured at most 0.22%, bound 1%.
            let full = errorOverValues(y, try fx("\(name).y"), values: values)
            XCTAssertLessThan(full, 0.01, "\(name) against fp32 torch (\(kernel))")
          }
        }
    }

    /// The AMX kernel's own tiling: head dims off 32 (40, 80), keys off its 128-key blocks and 32-key padding,
    /// queries off its 128-query tasks and 32-query parts, causal masks that leave whole parts and blocks unseen.
    /// Against the AVX-512 bf16 kernel, which rounds the same way: they differ only in summation order.
    func testAMXMatchesAVX512Kernel() throws {
        guard Attention.amxAvailable else { throw XCTSkip("this CPU (or OS) gives no AMX tiles") }
        defer { Attention.bf16KernelOverride = nil }
        for (lq, lk, heads, d, causal) in [(1, 1, 1, 40, false), (33, 77, 2, 40, false), (97, 97, 1, 64, true), (200, 300, 2, 80, false),
                                           (64, 129, 1, 160, false), (130, 130, 3, 64, true), (70, 257, 1, 96, false),
                                           (300, 300, 1, 64, true)] {
            let seed = UInt64(lq * 1000 + lk)
            let q = RandomTensorSource(seed: seed, scale: 1).makeTensor("q", shape: [2, lq, heads * d])
            let k = RandomTensorSource(seed: seed + 1, scale: 1).makeTensor("k", shape: [2, lk, heads * d])
            let v = RandomTensorSource(seed: seed + 2, scale: 1).makeTensor("v", shape: [2, lk, heads * d])
            var outs: [Tensor] = []
            for kernel in [Attention.BF16Kernel.amx, .avx512] {
                Attention.bf16KernelOverride = kernel
                outs.append(try Attention.scaledDotProduct(query: q, key: k, value: v, heads: heads, causal: causal, precision: .bf16))
            }
            let fp32 = try Attention.scaledDotProduct(query: q, key: k, value: v, heads: heads, causal: causal)
            let tag = "\(lq)x\(lk) heads \(heads)x\(d) causal \(causal)"
            XCTAssertLessThan(errorOverValues(outs[0], outs[1], values: v), 1.0 / 256, tag)
            XCTAssertLessThan(errorOverValues(outs[0], fp32, values: v), 0.01, tag)
            XCTAssertFalse(outs[0].scalars.contains { !$0.isFinite }, tag)
        }
    }
}
