import Foundation
#if canImport(CDNNL)
import CDNNL
#endif

/// Convolution and linear weights kept on disk already converted and laid out for the backend, one file
/// per weights source (its files, sizes and modification times) and precision, so that a later process
/// maps them instead of converting every weight again (OpenVINO's `CACHE_DIR` idea). A bf16 model's load
/// otherwise reads every fp32 weight, rounds it and re-lays it out into fresh memory: most of a one-shot
/// `sd txt2img` run's start. Off (nil) unless a directory is set; only oneDNN builds use it.
///
/// A file is written once, by the first load that misses (to a temporary name, then renamed, so a reader
/// never sees half of one); any file that does not match what this process would write (another oneDNN
/// or CPU, another precision, a changed weights file, a truncated or foreign file) is ignored and
/// replaced. Errors writing it never fail a load: the weights are already in memory.
public enum PackedWeightCache {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var configured: URL?

    /// Where the files are kept; nil (the default) keeps none. The directory is created when needed.
    public static var directory: URL? {
        get { lock.lock(); defer { lock.unlock() }; return configured }
        set { lock.lock(); defer { lock.unlock() }; configured = newValue }
    }

    /// A short, stable digest of `text` (FNV-1a, 64 bits, hex): names files and summarises long identities.
    /// Not a security measure: the whole key is stored in each file and compared.
    public static func fingerprint(_ text: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

#if canImport(CDNNL)
/// One source's packed weights for one load: the file's entries when it matched, and the layers packed
/// while loading when it did not (written by `finish`).
final class PackedWeightFile {
    static let magic = Array("SDPACKW1".utf8)
    static let alignment = 4096

    struct Index: Codable {
        var key: String
        var entries: [Entry]
    }

    struct Entry: Codable {
        var name: String
        var offset: Int
        var bytes: Int
        /// The oneDNN memory descriptor, as its bytes (same oneDNN and CPU: both are in the key).
        var layout: Data
    }

    let url: URL
    let key: String
    private let mapping: MappedFile?
    private let found: [String: Entry]
    private var packed: [(name: String, weights: OneDNNWeights)] = []
    private var missed = false

    /// - Parameter identity: the source's `cacheIdentity`.
    init(directory: URL, identity: String, precision: ComputePrecision) {
        let version = dnnl_version().pointee
        let isa = dnnl_get_effective_cpu_isa().rawValue
        let hash = version.hash.map { String(cString: $0) } ?? "?"
        key = """
        sd packed weights 1
        oneDNN \(version.major).\(version.minor).\(version.patch) \(hash) isa \(isa) descriptor \(MemoryLayout<dnnl_memory_desc_t>.size)
        precision \(precision.rawValue)
        \(identity)
        """
        url = directory.appendingPathComponent("\(PackedWeightCache.fingerprint(key)).sdpw")
        (mapping, found) = Self.open(url, key: key)
    }

    /// The file's entries when it is complete and made for `key`; else none.
    private static func open(_ url: URL, key: String) -> (MappedFile?, [String: Entry]) {
        guard let file = try? MappedFile(path: url.path), file.count >= 16,
              let head = file.slice(0, 8), Array(head) == magic,
              let length = file.readLE(UInt64.self, at: 8), length <= UInt64(file.count - 16),
              let json = file.slice(16, Int(length)),
              let index = try? JSONDecoder().decode(Index.self, from: Data(json)), index.key == key else { return (nil, [:]) }
        var entries: [String: Entry] = [:]
        for e in index.entries {
            guard e.offset % alignment == 0, e.bytes > 0, file.slice(e.offset, e.bytes) != nil,
                  e.layout.count == MemoryLayout<dnnl_memory_desc_t>.size else { return (nil, [:]) }
            entries[e.name] = e
        }
        return (file, entries)
    }

    /// The weights `name` in the file, when it holds them for this shape and type.
    func weights(_ name: String, dims expected: [Int], type: dnnl_data_type_t) -> OneDNNWeights? {
        guard let mapping, let e = found[name], let bytes = mapping.slice(e.offset, e.bytes), let base = bytes.baseAddress else {
            missed = true
            return nil
        }
        var desc = dnnl_memory_desc_t()
        withUnsafeMutableBytes(of: &desc) { $0.copyBytes(from: e.layout) }
        let dims = withUnsafeBytes(of: desc.dims) { raw in (0..<Int(desc.ndims)).map { Int(raw.load(fromByteOffset: $0 * 8, as: Int64.self)) } }
        guard desc.ndims == Int32(expected.count), dims == expected, desc.data_type == type,
              dnnl_memory_desc_get_size(&desc) == e.bytes else {
            missed = true
            return nil
        }
        let storage = TensorStorage(borrowing: base.assumingMemoryBound(to: Float.self), count: (e.bytes + 3) / 4, owner: mapping)
        return OneDNNWeights(storage: storage, desc: desc)
    }

    /// Remembers a layer's weights, from the file or packed while loading: `finish` writes them all when
    /// some were not in the file.
    func record(_ name: String, _ weights: OneDNNWeights) {
        packed.append((name, weights))
    }

    /// Writes the file when this load packed weights the file did not hold. Failures leave no file behind.
    func finish() {
        defer { packed = [] }
        guard missed || mapping == nil, !packed.isEmpty else { return }
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp")
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try write(to: temporary)
            guard rename(temporary.path, url.path) == 0 else { throw CocoaError(.fileWriteUnknown) }
        } catch {
            unlink(temporary.path)
        }
    }

    private func write(to temporary: URL) throws {
        // Offsets depend on the index's length, which depends on the offsets' digits: lay out with a
        // generous bound for the index first.
        var entries: [Entry] = []
        var layouts: [Data] = []
        for (_, w) in packed {
            var d = w.desc
            layouts.append(withUnsafeBytes(of: &d) { Data($0) })
        }
        let bound = 16 + (try JSONEncoder().encode(Index(key: key, entries: zip(packed, layouts).map {
            Entry(name: $0.name, offset: Int.max, bytes: Int.max, layout: $1)
        }))).count
        var offset = Self.aligned(bound)
        for ((name, w), layout) in zip(packed, layouts) {
            var d = w.desc
            let bytes = dnnl_memory_desc_get_size(&d)
            entries.append(Entry(name: name, offset: offset, bytes: bytes, layout: layout))
            offset = Self.aligned(offset + bytes)
        }
        let json = try JSONEncoder().encode(Index(key: key, entries: entries))
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else { throw CocoaError(.fileWriteNoPermission) }
        let handle = try FileHandle(forWritingTo: temporary)
        defer { try? handle.close() }
        var head = Data(Self.magic)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { head.append(contentsOf: $0) }
        head.append(json)
        try handle.write(contentsOf: head)
        for (entry, (_, w)) in zip(entries, packed) {
            try handle.seek(toOffset: UInt64(entry.offset))
            try handle.write(contentsOf: UnsafeRawBufferPointer(start: w.pointer, count: entry.bytes))
        }
        // The file ends at the last entry's end, so every entry's range is inside it.
        try handle.truncate(atOffset: UInt64(entries.last.map { $0.offset + $0.bytes } ?? head.count))
    }

    private static func aligned(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }
}
#endif
