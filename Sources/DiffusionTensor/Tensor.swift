import Foundation
#if canImport(CDNNL)
import CDNNL
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Keeps large freed buffers in malloc's heap instead of returning them to the kernel: without this,
/// every activation tensor (megabytes) is a fresh mmap whose pages fault in on first touch, which cost
/// ~8% of a UNet step. Done once, before the first tensor is allocated.
private let mallocTuned: Bool = {
    #if canImport(CDNNL)
    sd_tune_malloc()
    #endif
    return true
}()

/// Large freed buffers kept for reuse. Big activations (tens to hundreds of MB) come and go in the same
/// few sizes every step; handing them back to the kernel and faulting fresh zeroed pages in each time
/// cost ~15% of a VAE decode. The cache is bounded, so it adds at most `limitBytes` to peak memory
/// (256 MiB: 512 was ~2% faster but raised the SD 1.5 peak by ~290 MiB).
final class BufferPool: @unchecked Sendable {
    static let shared = BufferPool()
    /// Buffers smaller than this are left to malloc, which already reuses them.
    static let minimumBytes = 8 << 20
    let limitBytes = 256 << 20
    private let lock = NSLock()
    private var free: [Int: [UnsafeMutableRawPointer]] = [:]
    private var cachedBytes = 0

    func take(_ bytes: Int) -> UnsafeMutableRawPointer? {
        lock.lock(); defer { lock.unlock() }
        guard let p = free[bytes]?.popLast() else { return nil }
        cachedBytes -= bytes
        return p
    }

    /// Frees every kept buffer (after loading, when they held fp32 weights converted to bf16 and gone).
    func drain() {
        lock.lock(); defer { lock.unlock() }
        for (_, list) in free { for p in list { releaseBuffer(p) } }
        free = [:]
        cachedBytes = 0
    }

    /// Keeps the buffer if it fits in the budget; otherwise the caller frees it.
    func give(_ p: UnsafeMutableRawPointer, _ bytes: Int) -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard cachedBytes + bytes <= limitBytes else { return false }
        free[bytes, default: []].append(p)
        cachedBytes += bytes
        return true
    }
}

private func releaseBuffer(_ p: UnsafeMutableRawPointer) { free(p) }

/// Heap buffer of fp32 values, 64-byte aligned so SIMD kernels and oneDNN get full-width loads.
public final class TensorStorage: @unchecked Sendable {
    /// Frees the large buffers kept for reuse and hands malloc's free pages back to the kernel. Called where
    /// the sizes in use change: once the models are built (in bf16 the freed memory held fp32 weights just
    /// converted, which no activation will reuse) and before the VAE decodes (the UNet's activation sizes
    /// will not come again). Malloc keeps freed memory below its trim threshold, set high for speed.
    public static func releaseCachedBuffers() {
        BufferPool.shared.drain()
        #if canImport(Glibc)
        _ = malloc_trim(0)
        #endif
    }

    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>
    private var bytes: Int { max(count, 1) * MemoryLayout<Float>.stride }

    public init(count: Int) {
        _ = mallocTuned
        self.count = count
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        if bytes >= BufferPool.minimumBytes, let reused = BufferPool.shared.take(bytes) {
            pointer = reused.bindMemory(to: Float.self, capacity: max(count, 1))
            return
        }
        var raw: UnsafeMutableRawPointer?
        // posix_memalign never returns nil for a non-zero size unless out of memory.
        if posix_memalign(&raw, 64, bytes) != 0 || raw == nil {
            preconditionFailure("out of memory allocating \(bytes) bytes")
        }
        pointer = raw!.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    deinit {
        if bytes >= BufferPool.minimumBytes, BufferPool.shared.give(UnsafeMutableRawPointer(pointer), bytes) { return }
        free(pointer)
    }
}

/// A dense, contiguous, row-major fp32 tensor with value semantics (copy on write).
///
/// Images and feature maps are NHWC: `[batch, height, width, channels]`. Token sequences are
/// `[batch, tokens, channels]`. Convolution weights are kept in the backend's preferred layout by
/// `Conv2D`, not here.
public struct Tensor: Sendable, CustomStringConvertible {
    public private(set) var shape: [Int]
    @usableFromInline internal var storage: TensorStorage

    /// Number of elements.
    public var count: Int { storage.count }
    public var rank: Int { shape.count }

    /// An uninitialised tensor (contents are undefined); for kernels that overwrite every element.
    public init(uninitializedShape shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.storage = TensorStorage(count: shape.reduce(1, *))
    }

    public init(zeros shape: [Int]) {
        self.init(repeating: 0, shape: shape)
    }

    public init(repeating value: Float, shape: [Int]) {
        self.init(uninitializedShape: shape)
        storage.pointer.initialize(repeating: value, count: storage.count)
    }

    /// Creates a tensor from row-major scalars; throws when `scalars.count` disagrees with `shape`.
    public init(shape: [Int], scalars: [Float]) throws {
        guard shape.allSatisfy({ $0 >= 0 }) else { throw TensorError.invalidArgument("negative dimension in shape \(shape)") }
        let n = shape.reduce(1, *)
        guard n == scalars.count else {
            throw TensorError.shapeMismatch("shape \(shape) holds \(n) elements, got \(scalars.count) scalars")
        }
        self.init(uninitializedShape: shape)
        scalars.withUnsafeBufferPointer { storage.pointer.update(from: $0.baseAddress!, count: n) }
    }

    /// Creates a tensor of `shape` from raw little-endian data of `dtype` (fp16/bf16 converted to fp32).
    public init(shape: [Int], dtype: DType, bytes: UnsafeRawBufferPointer) throws {
        let n = shape.reduce(1, *)
        guard bytes.count == n * dtype.byteSize else {
            throw TensorError.shapeMismatch("shape \(shape) of \(dtype.rawValue) needs \(n * dtype.byteSize) bytes, got \(bytes.count)")
        }
        self.init(uninitializedShape: shape)
        if n > 0 { HalfConversion.convert(bytes.baseAddress!, dtype: dtype, count: n, into: storage.pointer) }
    }

    public var scalars: [Float] { Array(UnsafeBufferPointer(start: storage.pointer, count: count)) }

    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: storage.pointer, count: count))
    }

    /// Mutable access; copies the storage first when it is shared (value semantics).
    public mutating func withUnsafeMutableBufferPointer<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        if !isKnownUniquelyReferenced(&storage) {
            let copy = TensorStorage(count: count)
            copy.pointer.update(from: storage.pointer, count: count)
            storage = copy
        }
        return try body(UnsafeMutableBufferPointer(start: storage.pointer, count: count))
    }

    /// Raw pointer for kernels that only read. Valid while `self` is alive.
    @inlinable public var unsafePointer: UnsafePointer<Float> { UnsafePointer(storage.pointer) }

    /// Same data, new shape (no copy).
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        var shape = newShape
        if let inferred = shape.firstIndex(of: -1) {
            let known = shape.enumerated().filter { $0.offset != inferred }.map(\.element).reduce(1, *)
            guard known > 0, count % known == 0 else {
                throw TensorError.shapeMismatch("cannot reshape \(self.shape) to \(newShape)")
            }
            shape[inferred] = count / known
        }
        guard shape.allSatisfy({ $0 >= 0 }), shape.reduce(1, *) == count else {
            throw TensorError.shapeMismatch("cannot reshape \(self.shape) (\(count) elements) to \(newShape)")
        }
        var t = self
        t.shape = shape
        return t
    }

    public subscript(flat index: Int) -> Float {
        get { storage.pointer[index] }
        set { withUnsafeMutableBufferPointer { $0[index] = newValue } }
    }

    public var description: String {
        let head = scalars.prefix(8).map { String($0) }.joined(separator: ", ")
        return "Tensor(\(shape): [\(head)\(count > 8 ? ", ..." : "")])"
    }
}
