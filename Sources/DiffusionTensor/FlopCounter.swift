import Foundation

/// Counts the floating-point operations of the heavy kernels (convolutions, GEMMs, attention) while
/// enabled, so benchmarks can report achieved GFLOP/s for whole networks. Off by default: one branch per
/// kernel call.
public enum FlopCounter {
    nonisolated(unsafe) private static var enabled = false
    nonisolated(unsafe) private static var count: Double = 0
    private static let lock = NSLock()

    /// Starts counting from zero.
    public static func start() {
        lock.lock(); defer { lock.unlock() }
        count = 0
        enabled = true
    }

    /// Stops counting and returns the operations counted since `start`.
    @discardableResult
    public static func stop() -> Double {
        lock.lock(); defer { lock.unlock() }
        enabled = false
        return count
    }

    @inline(__always)
    static func add(_ flops: Double) {
        guard enabled else { return }
        lock.lock(); defer { lock.unlock() }
        count += flops
    }
}
