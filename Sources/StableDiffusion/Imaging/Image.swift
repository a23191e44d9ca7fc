/// Errors from decoding, encoding and processing images. Every case names the file (or `<memory>`)
/// so a CLI user knows which input was wrong.
public enum ImageError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file could not be read (missing, permission, I/O).
    case unreadable(file: String, detail: String)
    /// The data is not PNG or JPEG, or is a variant this engine does not decode.
    case unsupportedFormat(file: String, detail: String)
    /// The data ends before the image does.
    case truncated(file: String, detail: String)
    /// The data is damaged (bad structure, checksum, marker).
    case malformed(file: String, detail: String)
    /// Zero, negative or absurd dimensions, or arguments that do not fit the image.
    case badDimensions(file: String, detail: String)
    /// Writing failed; nothing is left at the destination.
    case writeFailed(file: String, detail: String)
    /// A processing argument outside its domain (crop box, channel count, ...).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .unreadable(let f, let d): return "\(f): cannot read image: \(d)"
        case .unsupportedFormat(let f, let d): return "\(f): unsupported image: \(d)"
        case .truncated(let f, let d): return "\(f): truncated image: \(d)"
        case .malformed(let f, let d): return "\(f): malformed image: \(d)"
        case .badDimensions(let f, let d): return "\(f): bad image dimensions: \(d)"
        case .writeFailed(let f, let d): return "\(f): cannot write image: \(d)"
        case .invalidArgument(let m): return "invalid image argument: \(m)"
        }
    }
}

/// An 8-bit image, row-major, channels interleaved: 1 = grayscale ("L"), 3 = RGB, 4 = RGBA.
///
/// This is the engine's equivalent of a PIL image in the modes diffusers uses; processing functions
/// reproduce PIL's integer arithmetic on it so results match diffusers byte for byte.
public struct Image: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let channels: Int
    /// `height * width * channels` bytes.
    public var pixels: [UInt8]

    /// Largest accepted side; also bounds decoder memory on hostile headers.
    public static let maxDimension = 32768
    /// Most pixels a decoded file may have (8192 x 8192): a header is checked against it before any pixel
    /// buffer is allocated, so a few hundred bytes claiming 32768 x 32768 cannot ask for 4 GiB.
    public static let maxPixels = 1 << 26

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) throws {
        guard width > 0, height > 0, width <= Image.maxDimension, height <= Image.maxDimension else {
            throw ImageError.badDimensions(file: "<memory>", detail: "\(width)x\(height)")
        }
        guard channels == 1 || channels == 3 || channels == 4 else {
            throw ImageError.invalidArgument("channels must be 1, 3 or 4, got \(channels)")
        }
        guard pixels.count == width * height * channels else {
            throw ImageError.invalidArgument("\(width)x\(height)x\(channels) needs \(width * height * channels) bytes, got \(pixels.count)")
        }
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// A constant image (PIL's `Image.new(mode, size, color)`); `value` is repeated per channel.
    public init(width: Int, height: Int, channels: Int, fill value: UInt8 = 0) throws {
        try self.init(width: width, height: height, channels: channels,
                      pixels: [UInt8](repeating: value, count: max(0, width * height * channels)))
    }

    /// Internal unchecked initialiser for results whose size is known to be valid.
    init(unchecked width: Int, _ height: Int, _ channels: Int, _ pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    @inlinable public subscript(x: Int, y: Int, c: Int) -> UInt8 {
        get { pixels[(y * width + x) * channels + c] }
        set { pixels[(y * width + x) * channels + c] = newValue }
    }

    // MARK: Mode conversions (PIL's `convert`)

    /// PIL `convert("RGB")`: gray is replicated, alpha is dropped (not composited), as PIL does.
    public func toRGB() -> Image {
        switch channels {
        case 3: return self
        case 1:
            var out = [UInt8](repeating: 0, count: width * height * 3)
            for i in 0..<(width * height) { let v = pixels[i]; out[3 * i] = v; out[3 * i + 1] = v; out[3 * i + 2] = v }
            return Image(unchecked: width, height, 3, out)
        default:
            var out = [UInt8](repeating: 0, count: width * height * 3)
            for i in 0..<(width * height) {
                out[3 * i] = pixels[4 * i]; out[3 * i + 1] = pixels[4 * i + 1]; out[3 * i + 2] = pixels[4 * i + 2]
            }
            return Image(unchecked: width, height, 3, out)
        }
    }

    /// PIL `convert("RGBA")`: opaque alpha added to gray and RGB.
    public func toRGBA() -> Image {
        if channels == 4 { return self }
        var out = [UInt8](repeating: 255, count: width * height * 4)
        for i in 0..<(width * height) {
            if channels == 1 {
                out[4 * i] = pixels[i]; out[4 * i + 1] = pixels[i]; out[4 * i + 2] = pixels[i]
            } else {
                out[4 * i] = pixels[3 * i]; out[4 * i + 1] = pixels[3 * i + 1]; out[4 * i + 2] = pixels[3 * i + 2]
            }
        }
        return Image(unchecked: width, height, 4, out)
    }

    /// PIL `convert("L")`: ITU-R 601-2 luma with PIL's fixed-point rounding; alpha is ignored.
    public func toGrayscale() -> Image {
        if channels == 1 { return self }
        var out = [UInt8](repeating: 0, count: width * height)
        for i in 0..<(width * height) {
            let p = i * channels
            let l = UInt32(pixels[p]) * 19595 + UInt32(pixels[p + 1]) * 38470 + UInt32(pixels[p + 2]) * 7471 + 0x8000
            out[i] = UInt8(l >> 16)
        }
        return Image(unchecked: width, height, 1, out)
    }

    /// PIL `crop((left, top, right, bottom))`: areas outside the image are zero, as in PIL.
    public func cropped(left: Int, top: Int, right: Int, bottom: Int) throws -> Image {
        guard right > left, bottom > top else {
            throw ImageError.invalidArgument("crop box (\(left), \(top), \(right), \(bottom)) is empty")
        }
        let w = right - left, h = bottom - top
        guard w <= Image.maxDimension, h <= Image.maxDimension else {
            throw ImageError.invalidArgument("crop box (\(left), \(top), \(right), \(bottom)) is too large")
        }
        var out = [UInt8](repeating: 0, count: w * h * channels)
        for y in 0..<h {
            let sy = y + top
            guard sy >= 0, sy < height else { continue }
            for x in 0..<w {
                let sx = x + left
                guard sx >= 0, sx < width else { continue }
                for c in 0..<channels { out[(y * w + x) * channels + c] = pixels[(sy * width + sx) * channels + c] }
            }
        }
        return Image(unchecked: w, h, channels, out)
    }

    /// PIL `paste(image, (x, y))` without a mask: the overlapping part of `other` replaces these pixels.
    /// `other` is converted to this image's channel count first, as PIL converts to the target mode.
    public mutating func paste(_ other: Image, x: Int, y: Int) {
        let src = other.converted(toChannels: channels)
        for sy in 0..<src.height {
            let dy = sy + y
            guard dy >= 0, dy < height else { continue }
            for sx in 0..<src.width {
                let dx = sx + x
                guard dx >= 0, dx < width else { continue }
                for c in 0..<channels { pixels[(dy * width + dx) * channels + c] = src.pixels[(sy * src.width + sx) * channels + c] }
            }
        }
    }

    /// Converts to 1, 3 or 4 channels with PIL's conversion rules.
    public func converted(toChannels n: Int) -> Image {
        switch n {
        case 1: return toGrayscale()
        case 3: return toRGB()
        default: return toRGBA()
        }
    }

    // MARK: Tensor conversions

    /// `[1, height, width, channels]` with values `byte / 255` (diffusers' `pil_to_numpy`), in [0, 1].
    public func tensor() -> Tensor {
        var t = Tensor(uninitializedShape: [1, height, width, channels])
        t.withUnsafeMutableBufferPointer { out in
            for i in 0..<pixels.count { out[i] = Float(pixels[i]) / 255 }
        }
        return t
    }

    /// Images from an NHWC tensor with values in [0, 1]: `round(x * 255)` (round half to even, as numpy),
    /// after clamping to [0, 1] (diffusers clamps in `denormalize`; values outside are clamped here too).
    public static func fromTensor(_ tensor: Tensor) throws -> [Image] {
        guard tensor.rank == 4, [1, 3, 4].contains(tensor.shape[3]) else {
            throw ImageError.invalidArgument("expected an NHWC tensor with 1, 3 or 4 channels, got \(tensor.shape)")
        }
        let (n, h, w, c) = (tensor.shape[0], tensor.shape[1], tensor.shape[2], tensor.shape[3])
        guard h > 0, w > 0, h <= maxDimension, w <= maxDimension else {
            throw ImageError.badDimensions(file: "<tensor>", detail: "\(w)x\(h)")
        }
        let per = h * w * c
        return tensor.withUnsafeBufferPointer { buf in
            (0..<n).map { b in
                var px = [UInt8](repeating: 0, count: per)
                for i in 0..<per { px[i] = Image.quantize(buf[b * per + i]) }
                return Image(unchecked: w, h, c, px)
            }
        }
    }

    /// numpy's `(x * 255).round().astype(uint8)` in float32 for x in [0, 1] (NaN maps to 0).
    @inlinable static func quantize(_ x: Float) -> UInt8 {
        let v = min(max(x, 0), 1) * Float(255)
        guard v == v else { return 0 }
        return UInt8(v.rounded(.toNearestOrEven))
    }
}
