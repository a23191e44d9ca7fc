#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Numerically stable softmax of one row in place (max-subtracted).
@inline(__always)
func softmaxRow(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
    var m = -Float.infinity
    for j in 0..<n { m = max(m, p[j]) }
    if m == -Float.infinity { for j in 0..<n { p[j] = 0 }; return }  // fully masked row
    var s: Float = 0
    for j in 0..<n { let e = expf(p[j] - m); p[j] = e; s += e }
    let inv = 1 / s
    for j in 0..<n { p[j] *= inv }
}

extension Tensor {
    /// Softmax over the last dimension.
    public func softmax() -> Tensor {
        var out = self
        let c = shape.last ?? 1
        let rows = count / max(c, 1)
        out.withUnsafeMutableBufferPointer { ob in
            let y = ob.baseAddress!
            Parallel.forRanges(rows, minChunk: 8) { r in
                for i in r { softmaxRow(y + i * c, c) }
            }
        }
        return out
    }
}
