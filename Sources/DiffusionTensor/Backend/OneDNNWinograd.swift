#if canImport(CDNNL)
import CDNNL
import CKernels

/// A bf16 3x3 convolution (stride 1, padding 1) as Winograd F(2x2, 3x3): the input transform (CKernels), 16
/// batched bf16 GEMMs (oneDNN's matmul, fp32 accumulation and output), the output transform with bias and the
/// residual (CKernels). 2.25x fewer multiplications than the direct convolution, for a transform pass over the
/// input and the products; it pays from 64 channels on (see `Conv2D.prefersWinograd`).
///
/// Numerics: the transformed input and weights are rounded to bf16 (the direct bf16 kernel rounds the input and
/// weights themselves), the products accumulate in fp32, the transforms are fp32. The weights are transformed
/// from the fp32 weights at load (one rounding, of the transformed values); `PackedWeightCache` keeps that form.
final class OneDNNWinograd {
    let inChannels: Int, outChannels: Int
    private let weights: OneDNNWeights
    private var plans: [Int: OneDNNPlan] = [:]

    /// Largest bytes of products (fp32 `[16][rows][out]`) one chunk of tiles writes; larger images run in chunks.
    static let chunkBytes = 64 << 20

    /// - Parameter weight: fp32 `[out, in, 3, 3]` (torch's layout), only read.
    init(weight: UnsafePointer<Float>, outChannels k: Int, inChannels c: Int) throws {
        inChannels = c
        outChannels = k
        guard sdk_has_avx512_bf16() != 0 else { throw TensorError.backend("Winograd convolution needs AVX512-BF16") }
        // The steps in between are malloc'd, not pooled: the pool would keep them resident until the load ends.
        let hwio = UnsafeMutablePointer<Float>.allocate(capacity: 9 * c * k)
        defer { hwio.deallocate() }
        let transformed = UnsafeMutablePointer<UInt16>.allocate(capacity: 16 * c * k)
        defer { transformed.deallocate() }
        try OneDNNWeights.reorder(UnsafeMutableRawPointer(mutating: weight), from: OneDNN.memoryDesc([k, c, 3, 3], tag: dnnl_oihw),
                                  to: OneDNN.memoryDesc([k, c, 3, 3], tag: dnnl_hwio), into: UnsafeMutableRawPointer(hwio))
        // In parallel and vectorised: single-threaded scalar code made SD-Turbo's bf16 load 11.4 s instead of 3.4.
        Parallel.forRanges(c, minChunk: 8) { r in
            _ = sdk_winograd_weights(hwio, Int64(k), Int64(c), Int64(r.lowerBound), Int64(r.upperBound), transformed)
        }
        // Laid out once, as the matmul wants it (its choice does not depend on the row count).
        var layout: dnnl_memory_desc_t?
        if var probe = try Self.descriptor(rows: 1024, c: c, k: k)?.desc {
            layout = withUnsafePointer(to: &probe) { OneDNNWeights.preferredLayout($0) }
        }
        weights = try OneDNNWeights(converting: transformed, plain: OneDNN.memoryDesc([16, c, k], tag: dnnl_abc, type: dnnl_bf16),
                                    into: layout ?? OneDNN.memoryDesc([16, c, k], tag: dnnl_abc, type: dnnl_bf16))
    }

    /// Over transformed weights already in a bf16 layout of `[16, in, out]` (from `PackedWeightCache`).
    init(packed: OneDNNWeights, outChannels k: Int, inChannels c: Int) {
        inChannels = c
        outChannels = k
        weights = packed
    }

    /// The transformed weights as held (for `PackedWeightCache`): bf16 `[16, in, out]`.
    var packedWeights: OneDNNWeights { weights }

    /// The shape of the transformed weights of a `[out, in, 3, 3]` convolution.
    static func packedShape(outChannels k: Int, inChannels c: Int) -> [Int] { [16, c, k] }

    /// The batched matmul `[16, rows, c] x [16, c, k] -> [16, rows, k]`, with `any` weights, and its memory descriptors.
    private static func descriptor(rows: Int, c: Int, k: Int) throws
        -> (desc: dnnl_matmul_desc_t, src: dnnl_memory_desc_t, dst: dnnl_memory_desc_t)? {
        var src = try OneDNN.memoryDesc([16, rows, c], tag: dnnl_abc, type: dnnl_bf16)
        var wAny = try OneDNN.memoryDesc([16, c, k], tag: dnnl_format_tag_any, type: dnnl_bf16)
        var dst = try OneDNN.memoryDesc([16, rows, k], tag: dnnl_abc)
        var desc = dnnl_matmul_desc_t()
        guard dnnl_matmul_desc_init(&desc, &src, &wAny, nil, &dst) == dnnl_success else { return nil }
        return (desc, src, dst)
    }

    private func plan(rows: Int) throws -> OneDNNPlan {
        if let p = plans[rows] { return p }
        guard let (made, src, dst) = try Self.descriptor(rows: rows, c: inChannels, k: outChannels) else {
            throw TensorError.backend("oneDNN Winograd matmul descriptor failed")
        }
        var desc = made
        let none = try OneDNN.memoryDesc([1], tag: dnnl_a)
        let p = try withUnsafePointer(to: &desc) {
            try OneDNN.plan($0, attr: nil, what: "Winograd bf16 matmul", src: src, dst: dst, bias: none)
        }
        plans[rows] = p
        return p
    }

    /// `out (+)= conv(input) + bias` over NHWC `[n, h, w, inChannels]` (fp32, or bf16 when `sourceIsBF16`) into
    /// `[n, h, w, outChannels]`; adds to `out`'s values when `accumulate`. The caller serialises calls.
    func run(source: UnsafeRawPointer, sourceIsBF16: Bool, n: Int, h: Int, w: Int, bias: UnsafePointer<Float>?,
             accumulate: Bool, into out: UnsafeMutablePointer<Float>) throws {
        guard sdk_has_avx512_bf16() != 0 else { throw TensorError.backend("Winograd convolution needs AVX512-BF16") }
        let (c, k) = (inChannels, outChannels)
        let tiles = n * ((h + 1) / 2) * ((w + 1) / 2)
        let cap = max(16, Self.chunkBytes / (64 * max(k, c)))
        let chunks = (tiles + cap - 1) / cap
        let rowsPerChunk = (tiles + chunks - 1) / chunks
        let v = BF16Buffer(count: 16 * rowsPerChunk * c)
        let m = TensorStorage(count: 16 * rowsPerChunk * k)
        var first = 0
        while first < tiles {
            let rows = min(rowsPerChunk, tiles - first)
            let vp = v.pointer, mp = m.pointer, tile0 = first
            Parallel.forRanges(rows, minChunk: 8) { r in
                _ = sdk_winograd_input(source, sourceIsBF16 ? 1 : 0, Int64(h), Int64(w), Int64(c), Int64(tile0 + r.lowerBound),
                                       Int64(r.count), vp, Int64(r.lowerBound), Int64(rows))
            }
            let p = try plan(rows: rows)
            try weights.reorder(to: p.wts)
            try p.execute(source: UnsafeMutableRawPointer(vp), weights: weights.pointer,
                          destination: UnsafeMutableRawPointer(mp), bias: nil)
            Parallel.forRanges(rows, minChunk: 8) { r in
                _ = sdk_winograd_output(mp, Int64(rows), Int64(r.lowerBound), Int64(h), Int64(w), Int64(k),
                                        Int64(tile0 + r.lowerBound), Int64(r.count), bias, accumulate ? 1 : 0, out)
            }
            first += rows
        }
        withExtendedLifetime((v, m)) {}
    }
}
#endif
