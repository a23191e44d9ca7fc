/// Scaled dot-product attention over `[batch, tokens, heads * headDim]` tensors (the layout the
/// projections produce, so no transposes are needed: a head is a strided column block).
///
/// Memory stays bounded: queries are processed in blocks of `queryBlock` rows, one (batch, head) at a
/// time, so the largest temporary is `queryBlock x keyTokens` scores, never `tokens x tokens x heads`.
public enum Attention {
    public static func scaledDotProduct(
        query q: Tensor, key k: Tensor, value v: Tensor, heads: Int,
        scale: Float? = nil, causal: Bool = false, queryBlock: Int = 1024
    ) throws -> Tensor {
        guard q.rank == 3, k.rank == 3, v.rank == 3 else {
            throw TensorError.shapeMismatch("attention expects [batch, tokens, channels], got \(q.shape), \(k.shape), \(v.shape)")
        }
        let (b, lq, dim) = (q.shape[0], q.shape[1], q.shape[2])
        let lk = k.shape[1]
        guard k.shape[0] == b, v.shape[0] == b, v.shape[1] == lk, k.shape[2] == dim, v.shape[2] == dim else {
            throw TensorError.shapeMismatch("attention operands disagree: q \(q.shape), k \(k.shape), v \(v.shape)")
        }
        guard heads > 0, dim % heads == 0, queryBlock > 0 else {
            throw TensorError.invalidArgument("attention: \(dim) channels cannot be split into \(heads) heads")
        }
        let d = dim / heads
        let alpha = scale ?? 1 / Float(d).squareRoot()
        let block = min(queryBlock, max(lq, 1))
        var out = Tensor(uninitializedShape: [b, lq, dim])
        let scores = TensorStorage(count: block * lk)
        let qp = q.unsafePointer, kp = k.unsafePointer, vp = v.unsafePointer
        out.withUnsafeMutableBufferPointer { ob in
            let o = ob.baseAddress!
            let s = scores.pointer
            for bi in 0..<b {
                for h in 0..<heads {
                    let qh = qp + bi * lq * dim + h * d
                    let kh = kp + bi * lk * dim + h * d
                    let vh = vp + bi * lk * dim + h * d
                    let oh = o + bi * lq * dim + h * d
                    var start = 0
                    while start < lq {
                        let rows = min(block, lq - start)
                        Gemm.sgemm(transposeA: false, transposeB: true, m: rows, n: lk, k: d, alpha: alpha,
                                   a: qh + start * dim, lda: dim, b: kh, ldb: dim, c: s, ldc: lk)
                        let first = start
                        Parallel.forRanges(rows, minChunk: 16) { r in
                            for i in r {
                                let row = s + i * lk
                                if causal { for j in (first + i + 1)..<max(lk, first + i + 1) { row[j] = -.infinity } }
                                softmaxRow(row, lk)
                            }
                        }
                        Gemm.sgemm(transposeA: false, transposeB: false, m: rows, n: d, k: lk,
                                   a: s, lda: lk, b: vh, ldb: dim, c: oh + start * dim, ldc: dim)
                        start += rows
                    }
                }
            }
        }
        return out
    }
}
