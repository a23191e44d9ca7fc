import Foundation
import DiffusionTensor
import StableDiffusion

/// Pictures sent by clients: base64 (optionally a `data:image/...;base64,` URL) of PNG or JPEG bytes.
/// Nothing here reads a file or fetches a URL: a request can only carry its pictures.
enum ImageInput {
    static func decodeBase64(_ text: String, field: String, maxSide: Int) throws -> Image {
        try decode(try bytes(base64: text, field: field), field: field, maxSide: maxSide)
    }

    /// A depth map sent as a base64 grayscale PNG (8- or 16-bit values as stored), shaped (H, W).
    static func decodeDepthMap(_ text: String, field: String, maxSide: Int) throws -> Tensor {
        let data = try bytes(base64: text, field: field)
        guard ImageFormat.sniff(data) == .png else { throw APIError.invalid(field, "a depth map must be a grayscale PNG", type: "image") }
        if let (w, h) = headerSize(data), w > maxSide || h > maxSide {
            throw APIError.invalid(field, "depth map is \(w)x\(h); at most \(maxSide) pixels a side are accepted", type: "image")
        }
        do { return try DepthMapFile.decodePNG(data, file: field) } catch {
            throw APIError.invalid(field, "cannot decode the depth map: \(error)", type: "image")
        }
    }

    /// The bytes of base64 text, optionally a `data:` URL; URLs to fetch are refused.
    static func bytes(base64 text: String, field: String) throws -> [UInt8] {
        var s = Substring(text.trimmingCharacters(in: .whitespacesAndNewlines))
        if s.hasPrefix("http://") || s.hasPrefix("https://") {
            throw APIError.invalid(field, "image URLs are not fetched; send the picture as base64", type: "image_url")
        }
        if s.hasPrefix("data:") {
            guard let comma = s.firstIndex(of: ",") else { throw APIError.invalid(field, "malformed data URL", type: "base64") }
            s = s[s.index(after: comma)...]
        }
        // Only the base64 alphabet (and line breaks) is accepted: anything else is not a picture.
        guard s.utf8.allSatisfy({ Self.base64Bytes.contains($0) }),
              let data = Data(base64Encoded: String(s), options: .ignoreUnknownCharacters), !data.isEmpty else {
            throw APIError.invalid(field, "invalid base64 image data", type: "base64")
        }
        return Array(data)
    }

    private static let base64Bytes = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n".utf8)

    /// PNG or JPEG bytes; the size is checked from the header before anything is decoded.
    static func decode(_ bytes: [UInt8], field: String, maxSide: Int) throws -> Image {
        guard ImageFormat.sniff(bytes) != nil else { throw APIError.invalid(field, "not a PNG or JPEG image", type: "image") }
        if let (w, h) = headerSize(bytes), w > maxSide || h > maxSide {
            throw APIError.invalid(field, "image is \(w)x\(h); at most \(maxSide) pixels a side are accepted", type: "image")
        }
        do { return try Image.decode(data: bytes, file: field) } catch {
            throw APIError.invalid(field, "cannot decode the image: \(error)", type: "image")
        }
    }

    /// Width and height from a PNG IHDR or a JPEG SOF marker, without decoding.
    static func headerSize(_ b: [UInt8]) -> (Int, Int)? {
        func be(_ i: Int, _ n: Int) -> Int? {
            guard i + n <= b.count else { return nil }
            return (i..<i + n).reduce(0) { $0 << 8 | Int(b[$1]) }
        }
        switch ImageFormat.sniff(b) {
        case .png:
            guard let w = be(16, 4), let h = be(20, 4) else { return nil }
            return (w, h)
        case .jpeg:
            var i = 2
            while i + 9 < b.count {
                guard b[i] == 0xFF else { return nil }
                let marker = b[i + 1]
                if marker == 0xFF { i += 1; continue }
                if marker == 0xD8 || (0xD0...0xD7).contains(marker) || marker == 0x01 { i += 2; continue }
                guard let len = be(i + 2, 2), len >= 2 else { return nil }
                if (0xC0...0xCF).contains(marker), marker != 0xC4, marker != 0xC8, marker != 0xCC {
                    guard let h = be(i + 5, 2), let w = be(i + 7, 2) else { return nil }
                    return (w, h)
                }
                i += 2 + len
            }
            return nil
        case nil:
            return nil
        }
    }

    /// A1111's `inpainting_mask_invert`: white becomes black and back (on the gray value).
    static func inverted(_ mask: Image) -> Image {
        let gray = mask.toGrayscale()
        guard let out = try? Image(width: gray.width, height: gray.height, channels: 1, pixels: gray.pixels.map { 255 - $0 }) else { return gray }
        return out
    }

    /// An all-white mask (repaint everything): A1111's img2img on an inpainting model without a mask.
    static func fullMask(like image: Image) throws -> Image {
        try Image(width: image.width, height: image.height, channels: 1, fill: 255)
    }
}
