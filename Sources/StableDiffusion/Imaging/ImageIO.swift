#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Container formats recognised by their magic bytes (the file extension is not trusted).
public enum ImageFormat: String, Sendable {
    case png, jpeg

    /// Sniffs `data`'s first bytes; nil when neither PNG nor JPEG.
    public static func sniff(_ data: [UInt8]) -> ImageFormat? {
        if data.count >= 8, Array(data[0..<8]) == PNGCodec.signature { return .png }
        if data.count >= 3, data[0] == 0xFF, data[1] == 0xD8, data[2] == 0xFF { return .jpeg }
        return nil
    }
}

extension Image {
    /// Loads a PNG or JPEG file as `diffusers.utils.load_image` does before `convert`: the EXIF
    /// orientation is applied (`ImageOps.exif_transpose`). Channels are as decoded (1, 3 or 4);
    /// call `toRGB()` for diffusers' default `convert("RGB")` or `loadRGB(path:)`.
    public static func load(path: String) throws -> Image {
        try decode(data: readFile(path), file: path)
    }

    /// `load_image(path)`: decoded, EXIF-transposed and converted to RGB.
    public static func loadRGB(path: String) throws -> Image {
        try load(path: path).toRGB()
    }

    /// Decodes PNG or JPEG data (format sniffed from magic bytes) and applies its EXIF orientation.
    /// `file` names the source in error messages.
    public static func decode(data: [UInt8], file: String = "<memory>") throws -> Image {
        guard !data.isEmpty else { throw ImageError.truncated(file: file, detail: "empty file") }
        switch ImageFormat.sniff(data) {
        case .png:
            let image = try PNGCodec.decode(data, file: file)
            return image.transposed(exifOrientation: PNGCodec.exifOrientation(data))
        case .jpeg:
            let image = try JPEGCodec.decode(data, file: file)
            return image.transposed(exifOrientation: JPEGCodec.exifOrientation(data))
        case nil:
            throw ImageError.unsupportedFormat(file: file, detail: "not a PNG or JPEG file")
        }
    }

    /// PNG bytes of this image with tEXt/iTXt chunks (e.g. `[("parameters", "...")]`).
    public func pngData(textChunks: [(key: String, value: String)] = []) throws -> [UInt8] {
        try PNGCodec.encode(self, textChunks: textChunks)
    }

    /// Writes a PNG atomically: a temporary file beside `path` is written, flushed and renamed over
    /// `path`, so on any failure nothing (and no partial file) is left at `path`.
    public func writePNG(to path: String, textChunks: [(key: String, value: String)] = []) throws {
        let bytes: [UInt8]
        do { bytes = try PNGCodec.encode(self, textChunks: textChunks, file: path) } catch let e as ImageError {
            throw e
        }
        try Image.writeAtomically(bytes, to: path)
    }

    // MARK: Files

    static func readFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw ImageError.unreadable(file: path, detail: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ImageError.unreadable(file: path, detail: String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw ImageError.unreadable(file: path, detail: "not a regular file") }
        // Bounds memory for absurd inputs; no supported image of maxDimension^2 needs more.
        guard st.st_size <= 1 << 31 else { throw ImageError.unreadable(file: path, detail: "file larger than 2 GiB") }
        var data = [UInt8](repeating: 0, count: Int(st.st_size))
        var done = 0
        while done < data.count {
            let n = data.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ImageError.unreadable(file: path, detail: String(cString: strerror(errno)))
            }
            if n == 0 { break }
            done += n
        }
        return Array(data.prefix(done))
    }

    static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        guard !base.isEmpty else { throw ImageError.writeFailed(file: path, detail: "path names a directory") }
        let tmp = (dir.isEmpty ? "" : dir + "/") + ".\(base).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw ImageError.writeFailed(file: path, detail: String(cString: strerror(errno))) }
        var failure: String?
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                failure = String(cString: strerror(errno)); break
            }
            done += n
        }
        if failure == nil, fsync(fd) != 0 { failure = String(cString: strerror(errno)) }
        if close(fd) != 0, failure == nil { failure = String(cString: strerror(errno)) }
        if failure == nil, rename(tmp, path) != 0 { failure = String(cString: strerror(errno)) }
        if let failure {
            unlink(tmp)
            throw ImageError.writeFailed(file: path, detail: failure)
        }
    }

    // MARK: EXIF orientation (PIL's ImageOps.exif_transpose)

    /// Applies EXIF orientation 2-8 as `ImageOps.exif_transpose` does; 1, nil or unknown values are a no-op.
    public func transposed(exifOrientation: Int?) -> Image {
        guard let o = exifOrientation, (2...8).contains(o) else { return self }
        // Output size and source pixel for each output pixel (x, y).
        let swap = o >= 5
        let ow = swap ? height : width, oh = swap ? width : height
        var out = [UInt8](repeating: 0, count: pixels.count)
        for y in 0..<oh {
            for x in 0..<ow {
                let sx: Int, sy: Int
                switch o {
                case 2: (sx, sy) = (width - 1 - x, y)                    // FLIP_LEFT_RIGHT
                case 3: (sx, sy) = (width - 1 - x, height - 1 - y)       // ROTATE_180
                case 4: (sx, sy) = (x, height - 1 - y)                   // FLIP_TOP_BOTTOM
                case 5: (sx, sy) = (y, x)                                // TRANSPOSE
                case 6: (sx, sy) = (y, height - 1 - x)                   // ROTATE_270 (clockwise 90)
                case 7: (sx, sy) = (width - 1 - y, height - 1 - x)       // TRANSVERSE
                default: (sx, sy) = (width - 1 - y, x)                   // 8: ROTATE_90 (counter-clockwise)
                }
                let d = (y * ow + x) * channels, s = (sy * width + sx) * channels
                for c in 0..<channels { out[d + c] = pixels[s + c] }
            }
        }
        return Image(unchecked: ow, oh, channels, out)
    }
}

/// Reads the Orientation tag (0x0112) of IFD0 from a TIFF-structured EXIF block; nil when absent or damaged.
enum EXIF {
    static func orientation(tiff d: ArraySlice<UInt8>) -> Int? {
        let b = Array(d)
        guard b.count >= 8 else { return nil }
        let little: Bool
        if b[0] == 0x49, b[1] == 0x49 { little = true } else if b[0] == 0x4D, b[1] == 0x4D { little = false } else { return nil }
        func u16(_ i: Int) -> Int? {
            guard i >= 0, i + 2 <= b.count else { return nil }
            return little ? Int(b[i]) | Int(b[i + 1]) << 8 : Int(b[i]) << 8 | Int(b[i + 1])
        }
        func u32(_ i: Int) -> Int? {
            guard let lo = u16(little ? i : i + 2), let hi = u16(little ? i + 2 : i) else { return nil }
            return hi << 16 | lo
        }
        guard u16(2) == 42, let ifd = u32(4), let n = u16(ifd) else { return nil }
        for k in 0..<n {
            let e = ifd + 2 + 12 * k
            guard let tag = u16(e) else { return nil }
            if tag == 0x0112 {
                guard let type = u16(e + 2), type == 3, let v = u16(e + 8) else { return nil }
                return v
            }
        }
        return nil
    }
}

extension PNGCodec {
    /// Orientation from an eXIf chunk, as PIL reads it for PNG.
    static func exifOrientation(_ data: [UInt8]) -> Int? {
        guard let chunks = try? walkChunks(data, file: ""), let exif = chunks.first(where: { $0.type == "eXIf" }) else { return nil }
        var body = exif.data[...]
        // Some writers keep the JPEG-style "Exif\0\0" prefix; PIL accepts it too.
        if body.starts(with: [0x45, 0x78, 0x69, 0x66, 0, 0]) { body = body.dropFirst(6) }
        return EXIF.orientation(tiff: body)
    }
}
