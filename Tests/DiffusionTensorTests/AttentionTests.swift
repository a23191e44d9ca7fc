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
            XCTAssertLessThan(full, 0.01, "\(name) against fp32 torch")
        }
    }
}
