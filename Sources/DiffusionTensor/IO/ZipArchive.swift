/// Read-only view of a zip archive held in a `MappedFile`: the central directory (with zip64),
/// and the bytes of stored (uncompressed) entries, which is all `torch.save` writes. Every size and
/// offset is checked against the file before use.
final class ZipArchive: @unchecked Sendable {
    struct Entry {
        let name: String
        let method: UInt16
        let flags: UInt16
        let crc32: UInt32
        let compressedSize: Int
        let uncompressedSize: Int
        let localHeaderOffset: Int
    }

    let file: MappedFile
    /// Entries in central-directory order.
    let entries: [Entry]
    private let byName: [String: Int]

    private var path: String { file.path }

    init(file: MappedFile) throws {
        self.file = file
        let path = file.path
        func bad(_ detail: String) -> TensorError { .badFile(file: path, detail: "zip archive: \(detail)") }

        // End of central directory: 22 bytes plus a comment of at most 65535 bytes, at the very end.
        let minEOCD = 22
        guard file.count >= minEOCD else { throw bad("file is too short (\(file.count) bytes) to be a zip archive") }
        var eocd = -1
        var pos = file.count - minEOCD
        let lowest = max(0, file.count - minEOCD - 0xFFFF)
        while pos >= lowest {
            if file.readLE(UInt32.self, at: pos) == 0x0605_4B50,
               let commentLength = file.readLE(UInt16.self, at: pos + 20), pos + minEOCD + Int(commentLength) <= file.count {
                eocd = pos
                break
            }
            pos -= 1
        }
        guard eocd >= 0 else { throw bad("no end-of-central-directory record (truncated, or not a zip archive)") }

        var entryCount = Int(file.readLE(UInt16.self, at: eocd + 10) ?? 0)
        var cdSize = Int(file.readLE(UInt32.self, at: eocd + 12) ?? 0)
        var cdOffset = Int(file.readLE(UInt32.self, at: eocd + 16) ?? 0)
        // A zip64 locator sits immediately before the classic record when the archive needs zip64.
        if eocd >= 20, file.readLE(UInt32.self, at: eocd - 20) == 0x0706_4B50 {
            guard let raw = file.readLE(UInt64.self, at: eocd - 20 + 8), raw < UInt64(file.count) else {
                throw bad("zip64 locator points outside the file")
            }
            let z = Int(raw)
            guard file.readLE(UInt32.self, at: z) == 0x0606_4B50,
                  let count = file.readLE(UInt64.self, at: z + 32),
                  let size = file.readLE(UInt64.self, at: z + 40),
                  let offset = file.readLE(UInt64.self, at: z + 48) else {
                throw bad("zip64 end-of-central-directory record is missing or truncated")
            }
            guard count <= UInt64(file.count), size <= UInt64(file.count), offset <= UInt64(file.count) else {
                throw bad("zip64 central directory size/offset exceed the file")
            }
            entryCount = Int(count); cdSize = Int(size); cdOffset = Int(offset)
        }
        guard cdOffset <= file.count, cdSize <= file.count - cdOffset else {
            throw bad("central directory (offset \(cdOffset), \(cdSize) bytes) lies outside the \(file.count)-byte file (truncated?)")
        }

        var entries: [Entry] = []
        var byName: [String: Int] = [:]
        var p = cdOffset
        let cdEnd = cdOffset + cdSize
        for i in 0..<entryCount {
            guard p + 46 <= cdEnd, file.readLE(UInt32.self, at: p) == 0x0201_4B50,
                  let flags = file.readLE(UInt16.self, at: p + 8),
                  let method = file.readLE(UInt16.self, at: p + 10),
                  let crc = file.readLE(UInt32.self, at: p + 16),
                  let comp32 = file.readLE(UInt32.self, at: p + 20),
                  let uncomp32 = file.readLE(UInt32.self, at: p + 24),
                  let nameLength = file.readLE(UInt16.self, at: p + 28),
                  let extraLength = file.readLE(UInt16.self, at: p + 30),
                  let commentLength = file.readLE(UInt16.self, at: p + 32),
                  let local32 = file.readLE(UInt32.self, at: p + 42) else {
                throw bad("central directory entry \(i) is malformed or truncated")
            }
            let recordEnd = p + 46 + Int(nameLength) + Int(extraLength) + Int(commentLength)
            guard recordEnd <= cdEnd, let nameBytes = file.slice(p + 46, Int(nameLength)),
                  let extra = file.slice(p + 46 + Int(nameLength), Int(extraLength)) else {
                throw bad("central directory entry \(i) runs past the directory")
            }
            let name = String(decoding: nameBytes, as: UTF8.self)
            var uncompressed = UInt64(uncomp32), compressed = UInt64(comp32), local = UInt64(local32)
            // Zip64 extended information: only the fields saturated at 0xFFFFFFFF are present, in order.
            if comp32 == 0xFFFF_FFFF || uncomp32 == 0xFFFF_FFFF || local32 == 0xFFFF_FFFF {
                guard let z64 = Self.zip64Extra(extra) else { throw bad("entry '\(name)': zip64 sizes without a zip64 extra field") }
                var q = 0
                func next() -> UInt64? {
                    guard q + 8 <= z64.count else { return nil }
                    defer { q += 8 }
                    return UInt64(littleEndian: z64.loadUnaligned(fromByteOffset: q, as: UInt64.self))
                }
                if uncomp32 == 0xFFFF_FFFF { guard let v = next() else { throw bad("entry '\(name)': short zip64 extra field") }; uncompressed = v }
                if comp32 == 0xFFFF_FFFF { guard let v = next() else { throw bad("entry '\(name)': short zip64 extra field") }; compressed = v }
                if local32 == 0xFFFF_FFFF { guard let v = next() else { throw bad("entry '\(name)': short zip64 extra field") }; local = v }
            }
            let limit = UInt64(file.count)
            guard compressed <= limit, local <= limit, uncompressed <= UInt64(Int.max) else {
                throw bad("entry '\(name)': size or offset beyond the end of the file (truncated?)")
            }
            guard byName[name] == nil else { throw bad("duplicate entry '\(name)'") }
            byName[name] = entries.count
            entries.append(Entry(name: name, method: method, flags: flags, crc32: crc, compressedSize: Int(compressed),
                                 uncompressedSize: Int(uncompressed), localHeaderOffset: Int(local)))
            p = recordEnd
        }
        self.entries = entries
        self.byName = byName
    }

    private static func zip64Extra(_ extra: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        var q = 0
        while q + 4 <= extra.count {
            let id = UInt16(littleEndian: extra.loadUnaligned(fromByteOffset: q, as: UInt16.self))
            let size = Int(UInt16(littleEndian: extra.loadUnaligned(fromByteOffset: q + 2, as: UInt16.self)))
            guard q + 4 + size <= extra.count else { return nil }
            if id == 0x0001 { return UnsafeRawBufferPointer(rebasing: extra[(q + 4)..<(q + 4 + size)]) }
            q += 4 + size
        }
        return nil
    }

    func entry(_ name: String) -> Entry? { byName[name].map { entries[$0] } }

    /// The bytes of a stored entry, straight from the mapping. Compressed or encrypted entries are
    /// refused: torch.save never writes them, and there is no inflater in the package.
    func data(_ name: String, verifyCRC: Bool = false) throws -> UnsafeRawBufferPointer {
        func bad(_ detail: String) -> TensorError { .badFile(file: path, detail: "zip entry '\(name)': \(detail)") }
        guard let e = entry(name) else { throw bad("missing from the archive") }
        guard e.flags & 1 == 0 else { throw bad("is encrypted") }
        guard e.method == 0 else {
            let what = e.method == 8 ? "deflate" : "method \(e.method)"
            throw bad("is compressed (\(what)); only stored (uncompressed) entries, as torch.save writes, are supported")
        }
        guard e.compressedSize == e.uncompressedSize else {
            throw bad("stored entry has compressed size \(e.compressedSize) but uncompressed size \(e.uncompressedSize)")
        }
        let h = e.localHeaderOffset
        guard file.readLE(UInt32.self, at: h) == 0x0403_4B50,
              let nameLength = file.readLE(UInt16.self, at: h + 26),
              let extraLength = file.readLE(UInt16.self, at: h + 28) else {
            throw bad("local header at offset \(h) is missing or truncated")
        }
        let start = h + 30 + Int(nameLength) + Int(extraLength)
        guard let bytes = file.slice(start, e.compressedSize) else {
            throw bad("data (\(e.compressedSize) bytes at offset \(start)) runs past the end of the \(file.count)-byte file (truncated?)")
        }
        if verifyCRC, CRC32.checksum(bytes) != e.crc32 { throw bad("CRC-32 mismatch (corrupted file)") }
        return bytes
    }
}

/// CRC-32 (IEEE 802.3, reflected), as zip uses.
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }
}
