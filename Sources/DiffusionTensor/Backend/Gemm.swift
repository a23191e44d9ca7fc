#if canImport(CDNNL)
import CDNNL
#elseif canImport(Accelerate)
import Accelerate
#endif

/// Row-major single-precision GEMM: `C = alpha * op(A) * op(B) + beta * C`, with `op` an optional
/// transpose and leading dimensions given in elements. oneDNN's `dnnl_sgemm` on Linux, Accelerate's
/// `cblas_sgemm` on Apple platforms, and a portable blocked loop elsewhere.
public enum Gemm {
    public static func sgemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        #if canImport(CDNNL)
        let status = dnnl_sgemm(
            transposeA ? 84 : 78, transposeB ? 84 : 78,  // "T" / "N"
            Int64(m), Int64(n), Int64(k), alpha, a, Int64(lda), b, Int64(ldb), beta, c, Int64(ldc))
        // Arguments are produced by this package, never by input, so a failure is a programming error.
        precondition(status == dnnl_success, "dnnl_sgemm failed with status \(status.rawValue)")
        #elseif canImport(Accelerate)
        cblas_sgemm(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
        #else
        portableSgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
                      a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        #endif
    }

    /// Straightforward GEMM used where no BLAS exists; parallel over rows of C.
    public static func portableSgemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        alpha: Float, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        Parallel.forRanges(m, minChunk: 4) { rows in
            var acc = [Float](repeating: 0, count: n)
            for i in rows {
                for j in 0..<n { acc[j] = 0 }
                for p in 0..<k {
                    let av = transposeA ? a[p * lda + i] : a[i * lda + p]
                    if av == 0 { continue }
                    if transposeB {
                        for j in 0..<n { acc[j] += av * b[j * ldb + p] }
                    } else {
                        let row = b + p * ldb
                        for j in 0..<n { acc[j] += av * row[j] }
                    }
                }
                let crow = c + i * ldc
                for j in 0..<n { crow[j] = alpha * acc[j] + (beta == 0 ? 0 : beta * crow[j]) }
            }
        }
    }
}
