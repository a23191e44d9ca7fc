#if canImport(CImageCodecs)
import CImageCodecs
#endif

extension PNGCodec {
    /// A grayscale PNG's samples as stored (0...255 or 0...65535): what `np.array(PIL.Image.open(f))` gives
    /// for "L" and "I;16" images. Depth maps are stored this way.
    public static func decodeGray16(_ data: [UInt8], file: String) throws -> (width: Int, height: Int, values: [UInt16]) {
        let signature: [UInt8] = [137, 80, 78, 71, 13, 10, 26, 10]
        guard data.count > 33, Array(data[0..<8]) == signature, String(decoding: data[12..<16], as: UTF8.self) == "IHDR" else {
            throw ImageError.malformed(file: file, detail: "not a PNG file")
        }
        let be32 = { (i: Int) in Int(data[i]) << 24 | Int(data[i + 1]) << 16 | Int(data[i + 2]) << 8 | Int(data[i + 3]) }
        let (width, height, bitDepth, colorType) = (be32(16), be32(20), Int(data[24]), Int(data[25]))
        guard colorType == 0 else { throw ImageError.unsupportedFormat(file: file, detail: "a depth map PNG must be grayscale without alpha (colour type \(colorType))") }
        guard width > 0, height > 0, width <= Image.maxDimension, height <= Image.maxDimension, width * height <= Image.maxPixels else {
            throw ImageError.badDimensions(file: file, detail: "\(width)x\(height)")
        }
        #if canImport(CImageCodecs)
        return try data.withUnsafeBytes { input in
            var png = png_image()
            png.version = UInt32(PNG_IMAGE_VERSION)
            guard png_image_begin_read_from_memory(&png, input.baseAddress, input.count) != 0 else {
                throw ImageError.malformed(file: file, detail: "PNG header: \(message(png))")
            }
            defer { png_image_free(&png) }
            // 16-bit with the linear flag is passed through unchanged (no gamma conversion).
            let wide = bitDepth == 16
            png.format = wide ? 4 : 0
            var values = [UInt16](repeating: 0, count: width * height)
            if wide {
                let ok = values.withUnsafeMutableBytes { png_image_finish_read(&png, nil, $0.baseAddress, Int32(width), nil) }
                guard ok != 0 else { throw ImageError.malformed(file: file, detail: "PNG data: \(message(png))") }
            } else {
                var bytes = [UInt8](repeating: 0, count: width * height)
                let ok = bytes.withUnsafeMutableBytes { png_image_finish_read(&png, nil, $0.baseAddress, Int32(width), nil) }
                guard ok != 0 else { throw ImageError.malformed(file: file, detail: "PNG data: \(message(png))") }
                values = bytes.map(UInt16.init)
            }
            return (width, height, values)
        }
        #else
        guard bitDepth == 8 else { throw ImageError.unsupportedFormat(file: file, detail: "16-bit depth PNGs need libpng") }
        let image = try decode(data, file: file)
        return (image.width, image.height, image.toGrayscale().pixels.map(UInt16.init))
        #endif
    }
}
