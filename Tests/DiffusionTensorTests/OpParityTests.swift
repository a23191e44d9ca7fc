import XCTest
import DiffusionTensor

/// Every op against torch's output (Scripts/reference/gen_op_fixtures.py), within 1e-5 relative.
final class OpParityTests: XCTestCase {
    static let fixtures = Result { try Fixtures("ops/ops.safetensors") }
    func fx(_ name: String) throws -> Tensor { try Self.fixtures.get()[name] }

    func testConv2D() throws {
        let cases: [(String, Int, ConvPadding)] = [
            ("conv_k3s1p1", 1, .uniform(1)), ("conv_k1", 1, .uniform(0)), ("conv_k3s2p1", 2, .uniform(1)),
            ("conv_k3s2_asym", 2, ConvPadding(top: 0, left: 0, bottom: 1, right: 1)),
            ("conv_nobias", 1, .uniform(1)), ("conv_k5", 1, .uniform(2)),
        ]
        for backend in [Conv2D.Backend.automatic, .portable] {
            for (name, stride, padding) in cases {
                let bias = try? fx("\(name).bias")
                let conv = try Conv2D(weight: fx("\(name).weight"), bias: bias, stride: stride, padding: padding, backend: backend)
                let x = try fx("\(name).x")
                assertClose(try conv(x), try fx("\(name).y"), "\(name) \(backend)")
                assertClose(try conv(x, residual: fx("\(name).residual"), activation: .silu), try fx("\(name).y_res_silu"), "\(name) fused")
                assertClose(try conv(x, activation: .gelu), try fx("\(name).y_gelu"), "\(name) gelu")
                // A second call reuses the cached primitive and the already re-laid-out weights.
                assertClose(try conv(x), try fx("\(name).y"), "\(name) cached")
            }
        }
    }

    /// A residual handed over with `consume` is summed into in place; a shared one is left as it was.
    func testConv2DWritesIntoAHandedOverResidual() throws {
        let source = RandomTensorSource(seed: 7, scale: 1)
        let x = source.makeTensor("x", shape: [1, 6, 5, 3])
        for backend in [Conv2D.Backend.automatic, .portable] {
            let conv = try Conv2D(weight: source.makeTensor("w", shape: [4, 3, 3, 3]), bias: nil, padding: .uniform(1), backend: backend)
            let kept = source.makeTensor("r", shape: [1, 6, 5, 4])
            let before = kept.scalars
            let shared = try conv(x, residual: kept)
            XCTAssertEqual(kept.scalars, before, "\(backend): the caller's residual changed")
            XCTAssertNotEqual(shared.unsafePointer, kept.unsafePointer)
            let expected = try conv(x) + kept
            assertClose(shared, expected, "\(backend) shared residual")
            let handed = source.makeTensor("r", shape: [1, 6, 5, 4])
            let address = handed.unsafePointer
            let summed = try conv(x, residual: consume handed)
            XCTAssertEqual(summed.unsafePointer, address, "\(backend): a handed-over residual was copied")
            XCTAssertEqual(summed.scalars, shared.scalars, "\(backend)")
        }
    }

    func testConv2DRejectsWrongShapes() throws {
        let conv = try Conv2D(weight: Tensor(zeros: [4, 3, 3, 3]), bias: nil, padding: .uniform(1))
        XCTAssertThrowsError(try conv(Tensor(zeros: [1, 5, 5, 2])))
        XCTAssertThrowsError(try conv(Tensor(zeros: [5, 5, 3])))
        XCTAssertThrowsError(try conv(Tensor(zeros: [1, 5, 5, 3]), residual: Tensor(zeros: [1, 5, 5, 3])))
        XCTAssertThrowsError(try Conv2D(weight: Tensor(zeros: [4, 3, 3]), bias: nil))
        XCTAssertThrowsError(try Conv2D(weight: Tensor(zeros: [4, 3, 3, 3]), bias: Tensor(zeros: [3])))
        XCTAssertThrowsError(try Conv2D(weight: Tensor(zeros: [4, 3, 3, 3]), bias: nil, stride: 0))
    }

    func testLinearAndMatmul() throws {
        let lin = try Linear(weight: fx("linear.weight"), bias: fx("linear.bias"))
        assertClose(try lin(fx("linear.x")), try fx("linear.y"))
        assertClose(try lin(fx("linear.x"), activation: .gelu), try fx("linear.y_gelu"))
        let y = try fx("linear.y")
        assertClose(try lin(fx("linear.x"), residual: y), y * 2)
        let noBias = try Linear(weight: fx("linear.weight"), bias: nil)
        assertClose(try noBias(fx("linear.x")), try fx("linear.y_nobias"))
        XCTAssertThrowsError(try lin(Tensor(zeros: [2, 15])))

        let a = try fx("matmul.a"), b = try fx("matmul.b"), expected = try fx("matmul.y")
        assertClose(try a.matmul(b), expected)
        assertClose(try a.matmul(fx("matmul.bt"), transposeOther: true), expected)
        assertClose(try fx("matmul.at").matmul(b, transposeSelf: true), expected)
        assertClose(try fx("matmul2d.a").matmul(fx("matmul2d.b")), try fx("matmul2d.y"))
        XCTAssertThrowsError(try a.matmul(a))
    }

    func testGroupNormAndLayerNorm() throws {
        for (name, groups, eps) in [("groupnorm_g8", 8, Float(1e-6)), ("groupnorm_g32", 32, 1e-5), ("groupnorm_g1", 1, 1e-5)] {
            let x = try fx("\(name).x")
            let g = try fx("\(name).gamma"), b = try fx("\(name).beta")
            assertClose(try x.groupNorm(groups: groups, gamma: g, beta: b, eps: eps), try fx("\(name).y"), name)
            assertClose(try x.groupNorm(groups: groups, gamma: g, beta: b, eps: eps, activation: .silu), try fx("\(name).y_silu"), name)
        }
        XCTAssertThrowsError(try Tensor(zeros: [1, 2, 2, 6]).groupNorm(groups: 4, gamma: nil, beta: nil, eps: 1e-5))
        let x = try fx("layernorm.x")
        assertClose(try x.layerNorm(gamma: fx("layernorm.gamma"), beta: fx("layernorm.beta"), eps: 1e-5), try fx("layernorm.y"))
        XCTAssertThrowsError(try x.layerNorm(gamma: Tensor(zeros: [3]), beta: nil, eps: 1e-5))
    }

    func testActivationsAndSoftmax() throws {
        let x = try fx("act.x")
        assertClose(x.silu(), try fx("act.silu"))
        assertClose(x.gelu(), try fx("act.gelu"))
        assertClose(x.gelu(approximateTanh: true), try fx("act.gelu_tanh"))
        assertClose(x.quickGelu(), try fx("act.quick_gelu"))
        assertClose(x.softmax(), try fx("softmax.y"))
        assertClose(try fx("softmax_large.x").softmax(), try fx("softmax_large.y"))
    }

    func testResize() throws {
        let x = try fx("resize.x")
        for (oh, ow) in [(7, 9), (21, 17), (10, 26)] {
            assertClose(try x.resized(height: oh, width: ow, mode: .bilinear), try fx("resize.bilinear_\(oh)x\(ow)"), "bilinear \(oh)x\(ow)")
            assertClose(try x.resized(height: oh, width: ow, mode: .bicubic), try fx("resize.bicubic_\(oh)x\(ow)"), "bicubic \(oh)x\(ow)")
        }
        assertClose(try x.resized(height: 6, width: 20, mode: .nearest), try fx("resize.nearest_6x20"))
        assertClose(try fx("upsample.x").upsampledNearest2x(), try fx("upsample.y"))
        XCTAssertThrowsError(try x.resized(height: 0, width: 3, mode: .bilinear))
    }

    func testBroadcastingArithmetic() throws {
        let a = try fx("bcast.a"), b = try fx("bcast.b")
        assertClose(try a + b, try fx("bcast.add"))
        assertClose(try a - b, try fx("bcast.sub"))
        assertClose(try a * b, try fx("bcast.mul"))
        assertClose(try a / b, try fx("bcast.div"))
        XCTAssertThrowsError(try a + Tensor(zeros: [2, 3]))
        XCTAssertEqual((try Tensor(shape: [2], scalars: [1, 2]) * 3 + 1).scalars, [4, 7])
    }

    func testAttention() throws {
        for (name, heads, causal) in [("attn_cross", 4, false), ("attn_self_long", 2, false), ("attn_causal", 3, true)] {
            let q = try fx("\(name).q"), k = try fx("\(name).k"), v = try fx("\(name).v")
            // The fused kernel where the CPU has AVX-512, then the GEMM path with several query blocks.
            assertClose(try Attention.scaledDotProduct(query: q, key: k, value: v, heads: heads, causal: causal),
                        try fx("\(name).y"), name)
            let native = KernelDispatch.native
            defer { KernelDispatch.native = native }
            KernelDispatch.native = false
            for block in [7, 128, 4096] {
                let y = try Attention.scaledDotProduct(query: q, key: k, value: v, heads: heads, causal: causal, queryBlock: block)
                assertClose(y, try fx("\(name).y"), "\(name) block \(block)")
            }
        }
        let q = Tensor(zeros: [1, 4, 6])
        XCTAssertThrowsError(try Attention.scaledDotProduct(query: q, key: q, value: q, heads: 4))
        XCTAssertThrowsError(try Attention.scaledDotProduct(query: q, key: Tensor(zeros: [1, 4, 8]), value: q, heads: 2))
    }

    func testShapeOps() throws {
        let a = try Tensor(shape: [2, 2, 3], scalars: (0..<12).map(Float.init))
        let b = try Tensor(shape: [2, 1, 3], scalars: (100..<106).map(Float.init))
        let c = try Tensor.concatenate([a, b], axis: 1)
        XCTAssertEqual(c.shape, [2, 3, 3])
        XCTAssertEqual(c.scalars, [0, 1, 2, 3, 4, 5, 100, 101, 102, 6, 7, 8, 9, 10, 11, 103, 104, 105])
        XCTAssertEqual(try c.slice(axis: 1, 2..<3).scalars, b.scalars)
        XCTAssertEqual(try c.slice(axis: -1, 1..<2).scalars, [1, 4, 101, 7, 10, 104])
        XCTAssertThrowsError(try c.slice(axis: 1, 2..<4))
        XCTAssertThrowsError(try Tensor.concatenate([a, Tensor(zeros: [2, 2, 2])], axis: 1))
        let p = try a.permuted([2, 0, 1])
        XCTAssertEqual(p.shape, [3, 2, 2])
        XCTAssertEqual(p.scalars, [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11])
        XCTAssertEqual(try a.chunked(2, axis: 0).map(\.shape), [[1, 2, 3], [1, 2, 3]])
        let nchw = try Tensor(shape: [1, 2, 1, 3], scalars: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(try nchw.nchwToNHWC().scalars, [1, 4, 2, 5, 3, 6])
        XCTAssertEqual(try nchw.nchwToNHWC().nhwcToNCHW().scalars, nchw.scalars)
    }
}
