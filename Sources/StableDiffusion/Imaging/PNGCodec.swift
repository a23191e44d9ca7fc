#if canImport(CImageCodecs)
import CImageCodecs
#endif

/// PNG decoding and encoding. Decoding follows what PIL gives diffusers after `convert("RGB")`:
/// 16-bit colour keeps the high byte, 16-bit grayscale (PIL mode "I;16") is clipped to 255, alpha and
/// palette transparency are dropped by the caller's conversion, not composited.
public enum PNGCodec {
    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// Decodes PNG data to 1 (gray), 3 (RGB) or 4 (RGBA / gray+alpha as RGBA) channels of 8 bits.
    public static func decode(_ data: [UInt8], file: String = "<memory>") throws -> Image {
        let chunks = try walkChunks(data, file: file)
        guard let ihdr = chunks.first, ihdr.type == "IHDR", ihdr.data.count == 13 else {
            throw ImageError.malformed(file: file, detail: "PNG does not start with an IHDR chunk")
        }
        let width = Int(be32(ihdr.data, 0)), height = Int(be32(ihdr.data, 4))
        guard width > 0, height > 0, width <= Image.maxDimension, height <= Image.maxDimension, width * height <= Image.maxPixels else {
            throw ImageError.badDimensions(file: file, detail: "PNG is \(width)x\(height)")
        }
        guard chunks.contains(where: { $0.type == "IEND" }) else {
            throw ImageError.truncated(file: file, detail: "PNG has no IEND chunk")
        }
        let bitDepth = Int(ihdr.data[8]), colorType = Int(ihdr.data[9])
        let hasTRNS = chunks.contains { $0.type == "tRNS" }
        let image = try platformDecode(data, file: file, width: width, height: height,
                                       bitDepth: bitDepth, colorType: colorType, hasTRNS: hasTRNS)
        return image
    }

    /// The tEXt and iTXt chunks of PNG data, keyword to text (later chunks win). zTXt is not read.
    public static func textChunks(_ data: [UInt8], file: String = "<memory>") throws -> [String: String] {
        var out: [String: String] = [:]
        for chunk in try walkChunks(data, file: file) {
            guard chunk.type == "tEXt" || chunk.type == "iTXt" else { continue }
            let d = chunk.data
            guard let nul = d.firstIndex(of: 0) else { continue }
            let key = String(decoding: d[0..<nul], as: UTF8.self)
            if chunk.type == "tEXt" {
                // tEXt is Latin-1: each byte is one code point.
                out[key] = String(String.UnicodeScalarView(d[(nul + 1)...].map { Unicode.Scalar($0) }))
            } else {
                // keyword \0 compressed(1) method(1) language \0 translated \0 text
                var i = nul + 1
                guard i + 2 <= d.count, d[i] == 0 else { continue }  // compressed iTXt is not read
                i += 2
                guard let langEnd = d[i...].firstIndex(of: 0) else { continue }
                guard let transEnd = d[(langEnd + 1)...].firstIndex(of: 0) else { continue }
                out[key] = String(decoding: d[(transEnd + 1)...], as: UTF8.self)
            }
        }
        return out
    }

    /// Encodes an 8-bit image as PNG (gray, RGB or RGBA as given), with `textChunks` as tEXt chunks
    /// (iTXt when a value is not Latin-1) right after IHDR, in the order given.
    public static func encode(_ image: Image, textChunks: [(key: String, value: String)] = [], file: String = "<memory>") throws -> [UInt8] {
        var png = try platformEncode(image, file: file)
        guard png.count > 33, Array(png[0..<8]) == signature, String(decoding: png[12..<16], as: UTF8.self) == "IHDR" else {
            throw ImageError.writeFailed(file: file, detail: "encoder produced no IHDR")
        }
        var extra: [UInt8] = []
        for (key, value) in textChunks {
            let keyBytes = Array(key.utf8)
            guard !keyBytes.isEmpty, keyBytes.count <= 79, keyBytes.allSatisfy({ $0 >= 32 && $0 < 127 }),
                  keyBytes.first != 32, keyBytes.last != 32 else {
                throw ImageError.invalidArgument("PNG text key \"\(key)\" must be 1-79 printable ASCII characters")
            }
            if let latin1 = latin1Bytes(value) {
                extra += chunk("tEXt", keyBytes + [0] + latin1)
            } else {
                extra += chunk("iTXt", keyBytes + [0, 0, 0, 0, 0] + Array(value.utf8))
            }
        }
        // IHDR is always 13 bytes: signature(8) + length(4) + type(4) + data(13) + crc(4) = 33.
        png.insert(contentsOf: extra, at: 33)
        return png
    }

    // MARK: Chunk structure

    struct Chunk { let type: String; let data: [UInt8] }

    /// Walks the chunk list, checking lengths and CRCs, so damage is reported before the codec runs.
    static func walkChunks(_ data: [UInt8], file: String) throws -> [Chunk] {
        guard data.count >= 8, Array(data[0..<8]) == signature else {
            throw ImageError.unsupportedFormat(file: file, detail: "not a PNG (bad signature)")
        }
        var chunks: [Chunk] = []
        var pos = 8
        while pos < data.count {
            guard pos + 12 <= data.count else { throw ImageError.truncated(file: file, detail: "PNG chunk header at byte \(pos) is cut off") }
            let length = Int(be32(data, pos))
            guard length <= 0x7FFF_FFFF, pos + 12 + length <= data.count else {
                throw ImageError.truncated(file: file, detail: "PNG chunk at byte \(pos) claims \(length) bytes past the end")
            }
            let typeBytes = Array(data[(pos + 4)..<(pos + 8)])
            guard typeBytes.allSatisfy({ ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) }) else {
                throw ImageError.malformed(file: file, detail: "PNG chunk at byte \(pos) has an invalid type")
            }
            let body = Array(data[(pos + 8)..<(pos + 8 + length)])
            let crc = be32(data, pos + 8 + length)
            guard CRC32.checksum(typeBytes + body) == crc else {
                throw ImageError.malformed(file: file, detail: "PNG chunk \(String(decoding: typeBytes, as: UTF8.self)) at byte \(pos) fails its CRC")
            }
            let type = String(decoding: typeBytes, as: UTF8.self)
            chunks.append(Chunk(type: type, data: body))
            pos += 12 + length
            if type == "IEND" { break }
        }
        return chunks
    }

    static func chunk(_ type: String, _ body: [UInt8]) -> [UInt8] {
        let t = Array(type.utf8)
        return be32Bytes(UInt32(body.count)) + t + body + be32Bytes(CRC32.checksum(t + body))
    }

    static func latin1Bytes(_ s: String) -> [UInt8]? {
        var out: [UInt8] = []
        for u in s.unicodeScalars {
            guard u.value < 256, u.value != 0 else { return nil }
            out.append(UInt8(u.value))
        }
        return out
    }

    @inline(__always) static func be32(_ d: [UInt8], _ i: Int) -> UInt32 {
        UInt32(d[i]) << 24 | UInt32(d[i + 1]) << 16 | UInt32(d[i + 2]) << 8 | UInt32(d[i + 3])
    }

    static func be32Bytes(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 255), UInt8((v >> 8) & 255), UInt8(v & 255)] }

    // MARK: libpng (simplified API: it catches libpng's longjmp errors itself and returns 0)

    #if canImport(CImageCodecs)
    static func platformDecode(_ data: [UInt8], file: String, width: Int, height: Int,
                               bitDepth: Int, colorType: Int, hasTRNS: Bool) throws -> Image {
        // libpng keeps a pointer to the input until finish_read, so all of it runs inside one access.
        try data.withUnsafeBytes { input in
            try libpngDecode(input, file: file, width: width, height: height, bitDepth: bitDepth, colorType: colorType, hasTRNS: hasTRNS)
        }
    }

    static func libpngDecode(_ input: UnsafeRawBufferPointer, file: String, width: Int, height: Int,
                             bitDepth: Int, colorType: Int, hasTRNS: Bool) throws -> Image {
        var png = png_image()
        png.version = UInt32(PNG_IMAGE_VERSION)
        guard png_image_begin_read_from_memory(&png, input.baseAddress, input.count) != 0 else {
            throw ImageError.malformed(file: file, detail: "PNG header: \(message(png))")
        }
        defer { png_image_free(&png) }
        let hasAlpha = (colorType & 4) != 0 || hasTRNS
        let isColor = (colorType & 2) != 0
        // 16-bit without alpha is read raw (linear output = no gamma change) so PIL's high-byte / clip rule
        // can be applied exactly. 16-bit with alpha would be premultiplied that way, so it is read as
        // 8-bit sRGB instead (libpng rounds where PIL truncates: at most 1 level apart).
        let raw16 = bitDepth == 16 && !hasAlpha
        var format: UInt32 = (isColor || colorType == 3 ? 2 : 0) | (hasAlpha ? 1 : 0)
        if raw16 { format |= 4 } else if bitDepth == 16 { png.flags |= UInt32(PNG_IMAGE_FLAG_16BIT_sRGB) }
        png.format = format
        let channels = (isColor || colorType == 3 ? 3 : 1) + (hasAlpha ? 1 : 0)
        let bytesPerSample = raw16 ? 2 : 1
        var buffer = [UInt8](repeating: 0, count: width * height * channels * bytesPerSample)
        let ok = buffer.withUnsafeMutableBytes {
            png_image_finish_read(&png, nil, $0.baseAddress, Int32(width * channels), nil)
        }
        guard ok != 0 else { throw ImageError.malformed(file: file, detail: "PNG data: \(message(png))") }
        if raw16 {
            var out = [UInt8](repeating: 0, count: width * height * channels)
            buffer.withUnsafeBytes { raw in
                let s = raw.bindMemory(to: UInt16.self)
                for i in 0..<out.count {
                    // PIL opens 16-bit gray as "I;16"; its conversion to 8 bits clips, colour keeps the high byte.
                    out[i] = isColor ? UInt8(s[i] >> 8) : UInt8(min(s[i], 255))
                }
            }
            return Image(unchecked: width, height, channels, out)
        }
        if channels == 2 {
            // Gray + alpha: expand to RGBA (the alpha is only dropped or used as RGBA by callers).
            var out = [UInt8](repeating: 0, count: width * height * 4)
            for i in 0..<(width * height) {
                let g = buffer[2 * i]
                out[4 * i] = g; out[4 * i + 1] = g; out[4 * i + 2] = g; out[4 * i + 3] = buffer[2 * i + 1]
            }
            return Image(unchecked: width, height, 4, out)
        }
        return Image(unchecked: width, height, channels, buffer)
    }

    static func message(_ png: png_image) -> String {
        var m = png.message
        return withUnsafeBytes(of: &m) { raw in
            let bytes = raw.prefix(while: { $0 != 0 })
            return bytes.isEmpty ? "libpng error" : String(decoding: bytes, as: UTF8.self)
        }
    }

    static func platformEncode(_ image: Image, file: String) throws -> [UInt8] {
        var png = png_image()
        png.version = UInt32(PNG_IMAGE_VERSION)
        png.width = UInt32(image.width)
        png.height = UInt32(image.height)
        png.format = image.channels == 1 ? 0 : (image.channels == 3 ? 2 : 3)
        var size = 0
        let stride = Int32(image.width * image.channels)
        let probe = image.pixels.withUnsafeBytes { png_image_write_to_memory(&png, nil, &size, 0, $0.baseAddress, stride, nil) }
        guard probe != 0, size > 0 else {
            png_image_free(&png)
            throw ImageError.writeFailed(file: file, detail: "PNG encoding: \(message(png))")
        }
        var out = [UInt8](repeating: 0, count: size)
        let ok = out.withUnsafeMutableBytes { dst in
            image.pixels.withUnsafeBytes { png_image_write_to_memory(&png, dst.baseAddress, &size, 0, $0.baseAddress, stride, nil) }
        }
        png_image_free(&png)
        guard ok != 0 else { throw ImageError.writeFailed(file: file, detail: "PNG encoding: \(message(png))") }
        return Array(out.prefix(size))
    }
    #elseif canImport(ImageIO)
    static func platformDecode(_ data: [UInt8], file: String, width: Int, height: Int,
                               bitDepth: Int, colorType: Int, hasTRNS: Bool) throws -> Image {
        try AppleImageIO.decode(data, file: file)
    }
    static func platformEncode(_ image: Image, file: String) throws -> [UInt8] {
        try AppleImageIO.encodePNG(image, file: file)
    }
    #else
    static func platformDecode(_ data: [UInt8], file: String, width: Int, height: Int,
                               bitDepth: Int, colorType: Int, hasTRNS: Bool) throws -> Image {
        throw ImageError.unsupportedFormat(file: file, detail: "no PNG codec on this platform")
    }
    static func platformEncode(_ image: Image, file: String) throws -> [UInt8] {
        throw ImageError.writeFailed(file: file, detail: "no PNG codec on this platform")
    }
    #endif
}

/// CRC-32 (ISO-HDLC, as PNG uses), table-driven.
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }
}
