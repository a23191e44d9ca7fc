#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes `.safetensors` files byte-identical to the Python `safetensors` library for the same
/// tensors and a single metadata key (with several keys the Rust library's order is a hash order;
/// here keys are sorted).
public enum SafeTensorsWriter {
    public typealias Entry = (name: String, tensor: Tensor, dtype: DType)

    /// Writes atomically: data goes to a temporary file in the destination folder, which is renamed
    /// over `path` only once complete, so a failure leaves no partial file behind.
    public static func write(_ tensors: [Entry], metadata: [String: String] = [:], to path: String) throws {
        var seen = Set<String>()
        for e in tensors {
            guard e.name != "__metadata__" else { throw TensorError.invalidArgument("safetensors: '__metadata__' is reserved, not a tensor name") }
            guard seen.insert(e.name).inserted else { throw TensorError.invalidArgument("safetensors: duplicate tensor name '\(e.name)'") }
        }
        // The reference library orders by dtype (wider first, in its enum order), then by name,
        // which keeps larger elements aligned.
        let rank = Dictionary(uniqueKeysWithValues: ScalarType.allCases.enumerated().map { ($0.element, $0.offset) })
        let ordered = tensors.sorted {
            let (ra, rb) = (rank[ScalarType($0.dtype)] ?? 0, rank[ScalarType($1.dtype)] ?? 0)
            return ra != rb ? ra > rb : $0.name.utf8.lexicographicallyPrecedes($1.name.utf8)
        }

        var header = "{"
        var first = true
        if !metadata.isEmpty {
            header += "\"__metadata__\":{"
            header += metadata.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
                .map { jsonString($0) + ":" + jsonString(metadata[$0] ?? "") }.joined(separator: ",")
            header += "}"
            first = false
        }
        var offset = 0
        for e in ordered {
            let size = e.tensor.count * e.dtype.byteSize
            if !first { header += "," }
            first = false
            header += jsonString(e.name) + ":{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":["
                + e.tensor.shape.map(String.init).joined(separator: ",") + "],\"data_offsets\":[\(offset),\(offset + size)]}"
            offset += size
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        // Pad with spaces so the data section starts 8-byte aligned, as the reference does.
        headerBytes += Array(repeating: UInt8(ascii: " "), count: (8 - headerBytes.count % 8) % 8)

        let out = try AtomicFile(path: path)
        do {
            var length = UInt64(headerBytes.count).littleEndian
            try withUnsafeBytes(of: &length) { try out.write($0) }
            try headerBytes.withUnsafeBytes { try out.write($0) }
            for e in ordered { try writeData(e.tensor, as: e.dtype, to: out) }
            try out.commit()
        } catch {
            out.discard()
            throw error
        }
    }

    /// Converts in bounded chunks so writing a large tensor as fp16 needs no full-size copy.
    private static func writeData(_ tensor: Tensor, as dtype: DType, to out: AtomicFile) throws {
        try tensor.withUnsafeBufferPointer { src in
            if dtype == .float32 {
                try out.write(UnsafeRawBufferPointer(src))
                return
            }
            let chunk = 1 << 16
            var buffer = [UInt16](repeating: 0, count: min(chunk, src.count))
            var start = 0
            while start < src.count {
                let n = min(chunk, src.count - start)
                for i in 0..<n {
                    let bits = dtype == .float16 ? HalfConversion.half(fromFloat: src[start + i])
                                                 : HalfConversion.bfloat16(fromFloat: src[start + i])
                    buffer[i] = bits.littleEndian
                }
                try buffer.withUnsafeBytes { try out.write(UnsafeRawBufferPointer(rebasing: $0.prefix(n * 2))) }
                start += n
            }
        }
    }

    /// JSON string literal escaped as serde_json does: quote, backslash and control characters only.
    /// (Also what the server writes its JSON strings with.)
    public static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}

/// A file written under a temporary name in the destination folder and renamed into place on
/// `commit`, so readers never see a partial file.
final class AtomicFile {
    let path: String
    private let tempPath: String
    private var fd: Int32

    init(path: String) throws {
        self.path = path
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        var template = Array("\(dir.isEmpty ? "/" : dir)/.\(base).tmp-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            throw TensorError.badFile(file: path, detail: "cannot create a temporary file in \(dir): \(String(cString: strerror(errno)))")
        }
        self.fd = fd
        tempPath = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        _ = fchmod(fd, 0o644)
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            guard let base = bytes.baseAddress else { return }
            let n = Glibc_write(fd, base + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw TensorError.badFile(file: path, detail: "write failed: \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }

    func commit() throws {
        guard fsync(fd) == 0 else {
            throw TensorError.badFile(file: path, detail: "fsync failed: \(String(cString: strerror(errno)))")
        }
        let closed = close(fd)
        fd = -1
        guard closed == 0 else { throw TensorError.badFile(file: path, detail: "close failed: \(String(cString: strerror(errno)))") }
        guard rename(tempPath, path) == 0 else {
            throw TensorError.badFile(file: path, detail: "cannot rename temporary file into place: \(String(cString: strerror(errno)))")
        }
    }

    func discard() {
        if fd >= 0 { close(fd); fd = -1 }
        unlink(tempPath)
    }

    deinit { if fd >= 0 { discard() } }
}

// `write` is shadowed by the method above; name the C function explicitly.
@inline(__always)
private func Glibc_write(_ fd: Int32, _ buf: UnsafeRawPointer, _ n: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, buf, n)
    #else
    return Darwin.write(fd, buf, n)
    #endif
}
