/// Scaled dot-product attention over `[batch, tokens, heads * headDim]` tensors (the layout the
/// projections produce, so no transposes are needed: a head is a strided column block).
///
/// Memory stays bounded: the work is split into (batch, head, query block) tasks run in parallel; each
/// computes a `rows x keyTokens` score block (2 MiB at most), its exponentials, and its rows of the output,
/// divided by the row sums last, so no `tokens x tokens` matrix is ever materialised, per head or otherwise.
public enum Attention {
    /// Bytes of scores one task works on. Larger blocks give the two GEMMs more rows, which pays more than
    /// staying within L2 (SD 1.5's first-level self-attention at 512x512, batch 2, AMD EPYC, `sd bench
    /// --suite ops`: 0.276 s with 512 KiB, 0.238 s with 2 MiB, 0.234 s with 4 MiB).
    static let scoreBlockBytes = 2 << 20

    public static func scaledDotProduct(
        query q: Tensor, key k: Tensor, value v: Tensor, heads: Int,
        scale: Float? = nil, causal: Bool = false, queryBlock: Int? = nil
    ) throws -> Tensor {
        guard q.rank == 3, k.rank == 3, v.rank == 3 else {
            throw TensorError.shapeMismatch("attention expects [batch, tokens, channels], got \(q.shape), \(k.shape), \(v.shape)")
        }
        let (b, lq, dim) = (q.shape[0], q.shape[1], q.shape[2])
        let lk = k.shape[1]
        guard k.shape[0] == b, v.shape[0] == b, v.shape[1] == lk, k.shape[2] == dim, v.shape[2] == dim else {
            throw TensorError.shapeMismatch("attention operands disagree: q \(q.shape), k \(k.shape), v \(v.shape)")
        }
        guard heads > 0, dim % heads == 0 else {
            throw TensorError.invalidArgument("attention: \(dim) channels cannot be split into \(heads) heads")
        }
        if let queryBlock, queryBlock <= 0 { throw TensorError.invalidArgument("attention query block must be positive") }
        let d = dim / heads
        let alpha = scale ?? 1 / Float(d).squareRoot()
        let fitting = max(8, scoreBlockBytes / (4 * max(lk, 1)))
        let block = max(1, min(queryBlock ?? fitting, max(lq, 1)))
        let blocksPerHead = (lq + block - 1) / block
        FlopCounter.add(4 * Double(b * heads) * Double(lq) * Double(lk) * Double(d))
        var out = Tensor(uninitializedShape: [b, lq, dim])
        let qp = q.unsafePointer, kp = k.unsafePointer, vp = v.unsafePointer
        out.withUnsafeMutableBufferPointer { ob in
            let o = ob.baseAddress!
            Parallel.forEach(b * heads * blocksPerHead) { task in
                let bi = task / (heads * blocksPerHead)
                let h = (task / blocksPerHead) % heads
                let start = (task % blocksPerHead) * block
                let rows = min(block, lq - start)
                let qh = qp + bi * lq * dim + h * d
                let kh = kp + bi * lk * dim + h * d
                let vh = vp + bi * lk * dim + h * d
                let oh = o + bi * lq * dim + h * d
                withUnsafeTemporaryAllocation(of: Float.self, capacity: rows * lk + rows) { scratch in
                    let s = scratch.baseAddress!, sums = s + rows * lk
                    // Called inside a parallel region, oneDNN's GEMM runs on this thread alone.
                    Gemm.sgemm(transposeA: false, transposeB: true, m: rows, n: lk, k: d, alpha: alpha,
                               a: qh + start * dim, lda: dim, b: kh, ldb: dim, c: s, ldc: lk)
                    for i in 0..<rows {
                        let row = s + i * lk
                        if causal, start + i + 1 < lk { for j in (start + i + 1)..<lk { row[j] = -.infinity } }
                        sums[i] = expRowMinusMax(row, lk)
                    }
                    let o = oh + start * dim
                    Gemm.sgemm(transposeA: false, transposeB: false, m: rows, n: d, k: lk,
                               a: s, lda: lk, b: vh, ldb: dim, c: o, ldc: dim)
                    // Softmax's division, on the rows x headDim output instead of the rows x keys weights.
                    for i in 0..<rows {
                        let inv: Float = sums[i] > 0 ? 1 / sums[i] : 0
                        let orow = o + i * dim
                        for j in 0..<d { orow[j] *= inv }
                    }
                }
            }
        }
        return out
    }
}
