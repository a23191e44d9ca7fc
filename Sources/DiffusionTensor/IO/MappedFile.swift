#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A whole file mapped read-only into memory. Weights are read straight from the mapping so that
/// a multi-gigabyte checkpoint costs page cache, not heap, until a tensor is converted.
///
/// The mapping is private and read-only, so sharing it across threads is safe. A file truncated by
/// another process while mapped can still raise SIGBUS on access; that is inherent to mmap.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    /// Start of the mapping; nil for an empty file (mmap refuses zero-length mappings).
    private let base: UnsafeRawPointer?
    public let count: Int
    /// Size, modification time and inode when mapped: another file at the path, or this one rewritten,
    /// has another (what `PackedWeightCache` keys on).
    public let fileIdentity: String

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw TensorError.badFile(file: path, detail: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw TensorError.badFile(file: path, detail: "cannot stat: \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw TensorError.badFile(file: path, detail: "not a regular file")
        }
        let size = Int(st.st_size)
        count = size
        #if canImport(Darwin)
        let mtime = st.st_mtimespec
        #else
        let mtime = st.st_mtim
        #endif
        fileIdentity = "size \(size) mtime \(mtime.tv_sec).\(mtime.tv_nsec) inode \(st.st_ino)"
        if size == 0 {
            base = nil
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw TensorError.badFile(file: path, detail: "cannot map \(size) bytes: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), count) }
    }

    /// The whole mapping (empty for an empty file). Valid while `self` is alive.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// Bytes `offset ..< offset + length`, or nil when that range is not inside the file.
    public func slice(_ offset: Int, _ length: Int) -> UnsafeRawBufferPointer? {
        guard offset >= 0, length >= 0, offset <= count, length <= count - offset else { return nil }
        guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + offset, count: length)
    }

    /// Tells the kernel the pages of `offset ..< offset + length` will not be read again soon, so they stop
    /// counting towards resident memory (loading converts each tensor once; without this, a model's file
    /// pages stay resident beside its fp32 copy until the file is closed).
    public func release(_ offset: Int, _ length: Int) {
        guard let base, length > 0, offset >= 0, offset <= count - length else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (offset / page) * page
        let end = min(count, ((offset + length + page - 1) / page) * page)
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, Int32(MADV_DONTNEED))
    }

    /// Little-endian integer at `offset`, or nil when it would read past the end.
    func readLE<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T? {
        guard let s = slice(offset, MemoryLayout<T>.size), let b = s.baseAddress else { return nil }
        return T(littleEndian: b.loadUnaligned(as: T.self))
    }
}
