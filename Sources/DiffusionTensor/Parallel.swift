import Dispatch
#if canImport(CDNNL)
import CDNNL
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The thread pool of the Swift kernels. On Linux it is OpenMP's pool, the one oneDNN runs on, so the
/// two never compete for cores (a second pool would find OpenMP's workers still spinning after every
/// oneDNN call); elsewhere Dispatch's `concurrentPerform`.
public enum Parallel {
    /// Number of worker threads the Swift kernels split work into.
    public static let workerCount: Int = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    /// Calls `body` once for each index in `0..<count`, in parallel.
    @inlinable
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        if count <= 1 {
            if count == 1 { body(0) }
            return
        }
        #if canImport(CDNNL)
        let ran: Int32 = withoutActuallyEscaping(body) { escapable in
            var task = escapable
            return withUnsafeMutablePointer(to: &task) { pointer in
                sd_parallel_for(count, { context, index in
                    context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(index)
                }, pointer)
            }
        }
        if ran == 0 { return }
        #endif
        // Kernels hand each index a disjoint slice of raw buffers, which the compiler cannot see;
        // the caller's closure is therefore treated as Sendable for the duration of this call only.
        withoutActuallyEscaping(body) { escapable in
            let sendable = unsafeBitCast(escapable, to: (@Sendable (Int) -> Void).self)
            DispatchQueue.concurrentPerform(iterations: count, execute: sendable)
        }
    }

    /// Splits `0..<count` into at most `workerCount * 4` contiguous chunks of at least `minChunk`
    /// elements and calls `body` with each range, in parallel. Small work stays on the caller's thread.
    @inlinable
    public static func forRanges(_ count: Int, minChunk: Int = 1, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let maxChunks = workerCount * 4
        let chunks = max(1, min(maxChunks, count / max(minChunk, 1)))
        if chunks == 1 { body(0..<count); return }
        let size = (count + chunks - 1) / chunks
        forEach(chunks) { c in
            let lo = c * size
            let hi = min(count, lo + size)
            if lo < hi { body(lo..<hi) }
        }
    }
}
