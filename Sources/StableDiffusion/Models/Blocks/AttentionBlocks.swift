import DiffusionTensor

/// diffusers' `Attention` (the processor path SD uses): projections, multi-head scaled dot-product
/// attention, output projection with the residual fused into its GEMM.
final class AttentionLayer {
    let toQ: Linear, toK: Linear, toV: Linear, toOut: Linear
    let heads: Int

    /// - Parameters:
    ///   - names: the q/k/v/out weight names (diffusers' current names, or the legacy VAE ones).
    init(_ r: WeightReader, _ p: String, queryDim: Int, contextDim: Int?, heads: Int, headDim: Int, qkvBias: Bool,
         names: (q: String, k: String, v: String, out: String) = ("to_q", "to_k", "to_v", "to_out.0")) throws {
        let inner = heads * headDim
        let ctx = contextDim ?? queryDim
        toQ = try r.linear("\(p).\(names.q)", in: queryDim, out: inner, bias: qkvBias)
        toK = try r.linear("\(p).\(names.k)", in: ctx, out: inner, bias: qkvBias)
        toV = try r.linear("\(p).\(names.v)", in: ctx, out: inner, bias: qkvBias)
        toOut = try r.linear("\(p).\(names.out)", in: inner, out: queryDim, bias: true)
        self.heads = heads
    }

    /// `out(attention(q(x), k(ctx), v(ctx))) + residual`, over `[batch, tokens, channels]`.
    func callAsFunction(_ x: Tensor, context: Tensor?, residual: Tensor?) throws -> Tensor {
        try self(.fp32(x), context: context, residual: residual)
    }

    /// The same on an input as its norm wrote it (bf16 for a bf16 model: the three projections of
    /// self-attention share it, where each would otherwise round the fp32 input itself).
    func callAsFunction(_ x: LayerInput, context: Tensor?, residual: Tensor?) throws -> Tensor {
        let ctx = context.map { LayerInput($0, for: toK.precision) } ?? x
        let q = try toQ(x), k = try toK(ctx), v = try toV(ctx)
        // A bf16 model's attention multiplies in bf16 too (its projections say which the model is).
        let precision: ComputePrecision = toQ.precision == .bf16 && Attention.bfloat16Available ? .bf16 : .fp32
        let o = try Attention.scaledDotProduct(query: q, key: k, value: v, heads: heads, precision: precision)
        return try toOut(o, residual: residual)
    }
}

/// GEGLU feed-forward: `Linear(dim, 2*inner)`, `a * gelu(b)` on the halves, `Linear(inner, dim)`.
final class FeedForward {
    let proj: Linear, out: Linear
    let inner: Int

    init(_ r: WeightReader, _ p: String, dim: Int, mult: Int = 4) throws {
        inner = dim * mult
        proj = try r.linear("\(p).net.0.proj", in: dim, out: 2 * inner)
        out = try r.linear("\(p).net.2", in: inner, out: dim)
    }

    /// `out(geglu(proj(x))) + residual`; a bf16 model's GEGLU writes bf16 for `out` directly.
    func callAsFunction(_ x: LayerInput, residual: Tensor) throws -> Tensor {
        let h = try proj(x)
        let gated: LayerInput = out.precision == .bf16 ? .bf16(try h.gegluBF16()) : .fp32(try h.geglu())
        return try out(gated, residual: residual)
    }
}

/// diffusers' `BasicTransformerBlock`: pre-LayerNorm self-attention (or cross-attention when
/// `only_cross_attention`), cross-attention, GEGLU feed-forward, each with a residual.
final class BasicTransformerBlock {
    let norm1: LayerNorm, attn1: AttentionLayer
    let norm2: LayerNorm, attn2: AttentionLayer
    let norm3: LayerNorm, ff: FeedForward
    let onlyCrossAttention: Bool

    init(_ r: WeightReader, _ p: String, dim: Int, heads: Int, headDim: Int, crossAttentionDim: Int, onlyCrossAttention: Bool) throws {
        norm1 = try r.layerNorm("\(p).norm1", channels: dim, eps: 1e-5)
        attn1 = try AttentionLayer(r, "\(p).attn1", queryDim: dim, contextDim: onlyCrossAttention ? crossAttentionDim : nil,
                                   heads: heads, headDim: headDim, qkvBias: false)
        norm2 = try r.layerNorm("\(p).norm2", channels: dim, eps: 1e-5)
        attn2 = try AttentionLayer(r, "\(p).attn2", queryDim: dim, contextDim: crossAttentionDim, heads: heads, headDim: headDim, qkvBias: false)
        norm3 = try r.layerNorm("\(p).norm3", channels: dim, eps: 1e-5)
        ff = try FeedForward(r, "\(p).ff", dim: dim)
        self.onlyCrossAttention = onlyCrossAttention
    }

    func callAsFunction(_ x: Tensor, context: Tensor) throws -> Tensor {
        var h = try attn1(try norm1.input(x, for: attn1.toQ), context: onlyCrossAttention ? context : nil, residual: x)
        h = try attn2(try norm2.input(h, for: attn2.toQ), context: context, residual: h)
        return try ff(try norm3.input(h, for: ff.proj), residual: h)
    }
}

/// diffusers' `Transformer2DModel` for continuous inputs: GroupNorm, projection in (1x1 conv or linear,
/// the same map in NHWC), transformer blocks over the H*W tokens, projection out plus the input.
final class Transformer2DModel {
    let norm: GroupNorm
    let projIn: Linear, projOut: Linear
    let blocks: [BasicTransformerBlock]

    init(_ r: WeightReader, _ p: String, channels c: Int, heads: Int, layers: Int, crossAttentionDim: Int,
         groups: Int, onlyCrossAttention: Bool) throws {
        guard heads > 0, c % heads == 0 else {
            throw TensorError.invalidArgument("\(p): \(c) channels cannot be split into \(heads) attention heads")
        }
        norm = try r.groupNorm("\(p).norm", channels: c, groups: groups, eps: 1e-6)
        projIn = try r.linear("\(p).proj_in", in: c, out: c)
        blocks = try (0..<layers).map {
            try BasicTransformerBlock(r, "\(p).transformer_blocks.\($0)", dim: c, heads: heads, headDim: c / heads,
                                      crossAttentionDim: crossAttentionDim, onlyCrossAttention: onlyCrossAttention)
        }
        projOut = try r.linear("\(p).proj_out", in: c, out: c)
    }

    func callAsFunction(_ x: Tensor, context: Tensor) throws -> Tensor {
        let (b, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        var t = try projIn(try norm.input(x, for: projIn, shape: [b, h * w, c]))
        for block in blocks { t = try block(t, context: context) }
        return try projOut(t, residual: x.reshaped([b, h * w, c])).reshaped([b, h, w, c])
    }
}
