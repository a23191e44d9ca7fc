#if !canImport(CImageCodecs) && canImport(ImageIO)
import CoreGraphics
import Foundation
import ImageIO

/// macOS fallback codec (CoreGraphics/ImageIO). Not byte-exact with PIL for 16-bit or gamma-tagged
/// files; Linux uses libpng/libjpeg. It decodes to RGBA 8-bit, alpha not premultiplied.
enum AppleImageIO {
    static func decode(_ data: [UInt8], file: String) throws -> Image {
        guard let src = CGImageSourceCreateWithData(Data(data) as CFData, nil),
              let cg = CGImageSourceCreateImageAtIndex(src, 0, nil) else {
            throw ImageError.malformed(file: file, detail: "ImageIO cannot decode the data")
        }
        let w = cg.width, h = cg.height
        guard w > 0, h > 0, w <= Image.maxDimension, h <= Image.maxDimension else {
            throw ImageError.badDimensions(file: file, detail: "\(w)x\(h)")
        }
        var px = [UInt8](repeating: 0, count: w * h * 4)
        let ok = px.withUnsafeMutableBytes { buf -> Bool in
            guard let ctx = CGContext(data: buf.baseAddress, width: w, height: h, bitsPerComponent: 8, bytesPerRow: w * 4,
                                      space: CGColorSpaceCreateDeviceRGB(),
                                      bitmapInfo: CGImageAlphaInfo.premultipliedLast.rawValue) else { return false }
            ctx.draw(cg, in: CGRect(x: 0, y: 0, width: w, height: h))
            return true
        }
        guard ok else { throw ImageError.malformed(file: file, detail: "cannot render the decoded image") }
        return try Image(width: w, height: h, channels: 4, pixels: px).toRGB().toRGBA()
    }

    static func encodePNG(_ image: Image, file: String) throws -> [UInt8] {
        let rgba = image.toRGBA()
        let out = NSMutableData()
        guard let provider = CGDataProvider(data: Data(rgba.pixels) as CFData),
              let cg = CGImage(width: rgba.width, height: rgba.height, bitsPerComponent: 8, bitsPerPixel: 32,
                               bytesPerRow: rgba.width * 4, space: CGColorSpaceCreateDeviceRGB(),
                               bitmapInfo: CGBitmapInfo(rawValue: CGImageAlphaInfo.last.rawValue),
                               provider: provider, decode: nil, shouldInterpolate: false, intent: .defaultIntent),
              let dest = CGImageDestinationCreateWithData(out as CFMutableData, "public.png" as CFString, 1, nil) else {
            throw ImageError.writeFailed(file: file, detail: "ImageIO cannot create a PNG encoder")
        }
        CGImageDestinationAddImage(dest, cg, nil)
        guard CGImageDestinationFinalize(dest) else { throw ImageError.writeFailed(file: file, detail: "ImageIO PNG encoding failed") }
        return [UInt8](out as Data)
    }
}
#endif
