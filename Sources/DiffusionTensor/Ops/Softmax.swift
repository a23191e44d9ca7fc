#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
