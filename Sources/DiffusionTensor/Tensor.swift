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

/// Large buffers, kept for reuse when freed. Big activations (tens to hundreds of MB) come and go in the
/// same few sizes; handing them back to the kernel and faulting fresh zeroed pages in each time cost a
/// fifth of a bf16 VAE decode (4.1 s against 3.3 s at 512x512 on a 2-core EPYC, where clearing fresh
/// pages is slow).
///
/// The cache never raises peak memory: it keeps freed buffers only while the bytes in use plus the bytes
/// kept stay within the most ever in use at once (the high-water mark). A request the cache cannot serve
/// first frees kept buffers, largest first, until the new one fits under that mark or none is left.
final class BufferPool: @unchecked Sendable {
    static let shared = BufferPool()
    /// Buffers smaller than this are left to malloc, which already reuses them.
    static let minimumBytes = 8 << 20
    private let lock = NSLock()
    private var kept: [(pointer: UnsafeMutableRawPointer, bytes: Int)] = []
    private var keptBytes = 0
    private var liveBytes = 0
    private var highWaterBytes = 0

    /// A buffer of `bytes` (64-byte aligned): a kept one of that size, or a fresh one.
    func allocate(_ bytes: Int) -> UnsafeMutableRawPointer {
        var evicted: [UnsafeMutableRawPointer] = []
        lock.lock()
        liveBytes += bytes
        if let i = kept.lastIndex(where: { $0.bytes == bytes }) {
            keptBytes -= bytes
            let p = kept.remove(at: i).pointer
            lock.unlock()
            return p
        }
        while liveBytes + keptBytes > highWaterBytes, let i = kept.indices.max(by: { kept[$0].bytes < kept[$1].bytes }) {
            keptBytes -= kept[i].bytes
            evicted.append(kept.remove(at: i).pointer)
        }
        highWaterBytes = max(highWaterBytes, liveBytes)
        lock.unlock()
        for p in evicted { free(p) }
        return alignedAllocation(bytes)
    }

    /// Takes back a buffer from `allocate`: it fits under the high-water mark by construction.
    func release(_ p: UnsafeMutableRawPointer, _ bytes: Int) {
        lock.lock(); defer { lock.unlock() }
        liveBytes -= bytes
        kept.append((p, bytes))
        keptBytes += bytes
    }

    var statistics: BufferPoolStatistics {
        lock.lock(); defer { lock.unlock() }
        return BufferPoolStatistics(liveBytes: liveBytes, keptBytes: keptBytes, highWaterBytes: highWaterBytes)
    }

    /// Frees every kept buffer and restarts the high-water mark from the bytes in use (where the sizes in
    /// use change: after loading, when the freed buffers held fp32 weights now converted to bf16).
    func drain() {
        lock.lock()
        let evicted = kept
        kept = []
        keptBytes = 0
        highWaterBytes = liveBytes
        lock.unlock()
        for (p, _) in evicted { free(p) }
    }
}

/// What the pool of large buffers holds, for tests and diagnostics.
public struct BufferPoolStatistics: Sendable, Equatable {
    /// Bytes of large buffers in use.
    public let liveBytes: Int
    /// Bytes of freed large buffers kept for reuse.
    public let keptBytes: Int
    /// The most bytes of large buffers in use at once since the last `releaseCachedBuffers`.
    public let highWaterBytes: Int
}

private func alignedAllocation(_ bytes: Int) -> UnsafeMutableRawPointer {
    var raw: UnsafeMutableRawPointer?
    // posix_memalign never returns nil for a non-zero size unless out of memory.
    if posix_memalign(&raw, 64, bytes) != 0 || raw == nil {
        preconditionFailure("out of memory allocating \(bytes) bytes")
    }
    return raw!
}

/// Heap buffer of fp32 values, 64-byte aligned so SIMD kernels and oneDNN get full-width loads.
public final class TensorStorage: @unchecked Sendable {
    /// Frees the large buffers kept for reuse and hands malloc's free pages back to the kernel. Called where
    /// the sizes in use change: once the models are built (in bf16 the freed memory held fp32 weights just
    /// converted, which no activation will reuse), before the VAE decodes (the UNet's activation sizes
    /// will not come again) and after it (so a server holds only its weights while it waits). Malloc keeps
    /// freed memory below its trim threshold, set high for speed.
    public static func releaseCachedBuffers() {
        BufferPool.shared.drain()
        #if canImport(Glibc)
        _ = malloc_trim(0)
        #endif
    }

    /// Buffers of at least this many bytes go through the pool.
    public static var pooledMinimumBytes: Int { BufferPool.minimumBytes }
    public static var poolStatistics: BufferPoolStatistics { BufferPool.shared.statistics }

    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>
    /// False for storage over memory it does not own (`init(borrowing:count:)`): nothing is freed.
    private let owned: Bool
    /// What keeps borrowed memory valid (a mapped file), held as long as this storage; nil otherwise.
    private let owner: AnyObject?
    private var bytes: Int { max(count, 1) * MemoryLayout<Float>.stride }

    public init(count: Int) {
        _ = mallocTuned
        self.count = count
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let raw = bytes >= BufferPool.minimumBytes ? BufferPool.shared.allocate(bytes) : alignedAllocation(bytes)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        owned = true
        owner = nil
    }

    /// Storage over fp32 values this object does not own (a read-only file mapping, for
    /// `TensorSource.withTensor`, or packed weights in a cache file): never written, and valid only while
    /// the memory's owner keeps it. With `owner` it lives as long as this storage.
    init(borrowing values: UnsafePointer<Float>, count: Int, owner: AnyObject? = nil) {
        self.count = count
        pointer = UnsafeMutablePointer(mutating: values)
        owned = false
        self.owner = owner
    }

    deinit {
        guard owned else { return }
        if bytes >= BufferPool.minimumBytes {
            BufferPool.shared.release(UnsafeMutableRawPointer(pointer), bytes)
        } else {
            free(pointer)
        }
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

    /// A tensor over `count` fp32 values it does not own (see `TensorStorage(borrowing:count:)`).
    init(borrowing values: UnsafePointer<Float>, shape: [Int]) {
        self.shape = shape
        storage = TensorStorage(borrowing: values, count: shape.reduce(1, *))
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
