/// A crop box (left, top, right, bottom) in pixels, right/bottom exclusive, as PIL's crop boxes.
public struct CropRegion: Sendable, Equatable, CustomStringConvertible {
    public var x1: Int, y1: Int, x2: Int, y2: Int
    public init(x1: Int, y1: Int, x2: Int, y2: Int) { self.x1 = x1; self.y1 = y1; self.x2 = x2; self.y2 = y2 }
    public var width: Int { x2 - x1 }
    public var height: Int { y2 - y1 }
    public var description: String { "(\(x1), \(y1), \(x2), \(y2))" }
}

extension VaeImageProcessor {
    /// diffusers' `get_crop_region(mask, width, height, pad)`: the bounding box of the mask's non-zero
    /// ("L" conversion) pixels, padded by `pad`, then grown to the aspect ratio `width / height` and
    /// shifted back inside the image, with diffusers' exact integer steps.
    ///
    /// A mask with no non-zero pixel makes diffusers divide by zero or return a meaningless box; here
    /// it is an error.
    public static func cropRegion(mask maskImage: Image, width: Int, height: Int, pad: Int) throws -> CropRegion {
        guard width > 0, height > 0 else { throw ImageError.invalidArgument("crop region for a \(width)x\(height) target") }
        let mask = maskImage.toGrayscale()
        let w = mask.width, h = mask.height
        var colUsed = [Bool](repeating: false, count: w), rowUsed = [Bool](repeating: false, count: h)
        for y in 0..<h {
            for x in 0..<w where mask.pixels[y * w + x] != 0 { colUsed[x] = true; rowUsed[y] = true }
        }
        guard let firstCol = colUsed.firstIndex(of: true), let lastCol = colUsed.lastIndex(of: true),
              let firstRow = rowUsed.firstIndex(of: true), let lastRow = rowUsed.lastIndex(of: true) else {
            throw ImageError.invalidArgument("the mask is empty (all black): nothing to inpaint, no crop region")
        }
        let cropLeft = firstCol, cropRight = w - 1 - lastCol, cropTop = firstRow, cropBottom = h - 1 - lastRow
        var x1 = max(cropLeft - pad, 0), y1 = max(cropTop - pad, 0)
        var x2 = min(w - cropRight + pad, w), y2 = min(h - cropBottom + pad, h)

        let ratioCrop = Double(x2 - x1) / Double(y2 - y1)
        let ratioProcessing = Double(width) / Double(height)
        if ratioCrop > ratioProcessing {
            let desiredHeight = Double(x2 - x1) / ratioProcessing
            let diff = Int((desiredHeight - Double(y2 - y1)).rounded(.towardZero))  // Python int()
            y1 -= floorDiv(diff, 2)
            y2 += diff - floorDiv(diff, 2)
            if y2 >= mask.height { let d = y2 - mask.height; y2 -= d; y1 -= d }
            if y1 < 0 { y2 -= y1; y1 -= y1 }
            if y2 >= mask.height { y2 = mask.height }
        } else {
            let desiredWidth = Double(y2 - y1) * ratioProcessing
            let diff = Int((desiredWidth - Double(x2 - x1)).rounded(.towardZero))
            x1 -= floorDiv(diff, 2)
            x2 += diff - floorDiv(diff, 2)
            if x2 >= mask.width { let d = x2 - mask.width; x2 -= d; x1 -= d }
            if x1 < 0 { x2 -= x1; x1 -= x1 }
            if x2 >= mask.width { x2 = mask.width }
        }
        return CropRegion(x1: x1, y1: y1, x2: x2, y2: y2)
    }

    /// diffusers' `apply_overlay(mask, init_image, image, crop_coords)`: the generated `image` (resized
    /// with `crop` mode into `cropCoords` when given) shows where the mask is white; the original shows
    /// through where it is black, blended by the mask's gray level with PIL's premultiplied-alpha
    /// integer arithmetic. The result is RGB at the original image's size.
    public func applyOverlay(mask: Image, initImage: Image, image: Image, cropCoords: CropRegion? = nil) throws -> Image {
        let width = initImage.width, height = initImage.height
        guard mask.width == width, mask.height == height else {
            throw ImageError.invalidArgument("overlay mask is \(mask.width)x\(mask.height) but the image is \(width)x\(height)")
        }
        let inv = mask.toGrayscale().pixels.map { 255 - $0 }
        // init_image -> RGBA -> RGBa, pasted through the inverted mask onto transparent black, -> RGBA.
        let initRGBa = initImage.toRGBA().premultiplied()
        var masked = [UInt8](repeating: 0, count: width * height * 4)
        for i in 0..<(width * height) {
            let m = Int(inv[i])
            for c in 0..<4 { masked[4 * i + c] = UInt8(Imaging.div255(Int(initRGBa.pixels[4 * i + c]) * m)) }
        }
        let overlay = Image(unchecked: width, height, 4, masked).unpremultiplied()

        var base: Image
        if let r = cropCoords {
            guard r.width > 0, r.height > 0 else { throw ImageError.invalidArgument("empty overlay crop region \(r)") }
            let fitted = try resize(image, height: r.height, width: r.width, mode: .crop)
            var canvas = try Image(width: width, height: height, channels: 4)
            canvas.paste(fitted, x: r.x1, y: r.y1)
            base = canvas.toRGB()
        } else {
            guard image.width == width, image.height == height else {
                throw ImageError.invalidArgument("overlay image is \(image.width)x\(image.height) but the original is \(width)x\(height)")
            }
            base = image.toRGB()
        }
        // dst = base (opaque), src = overlay: PIL alpha_composite, then convert("RGB").
        var out = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) {
            let sa = Int(overlay.pixels[4 * i + 3])
            for c in 0..<3 {
                let d = Int(base.pixels[3 * i + c])
                out[3 * i + c] = sa == 0 ? UInt8(d) : UInt8(Image.alphaCompositeChannel(src: Int(overlay.pixels[4 * i + c]), srcA: sa, dst: d, dstA: 255))
            }
        }
        return Image(unchecked: width, height, 3, out)
    }
}

extension Image {
    /// One colour channel of PIL's `alpha_composite` (7 extra bits of precision, rounded divisions).
    static func alphaCompositeChannel(src: Int, srcA: Int, dst: Int, dstA: Int) -> Int {
        let precision = 7
        let blend = dstA * (255 - srcA)
        let outA255 = srcA * 255 + blend
        let coef1 = srcA * 255 * 255 * (1 << precision) / outA255
        let coef2 = 255 * (1 << precision) - coef1
        let t = src * coef1 + dst * coef2 + (0x80 << precision)
        return (((t >> 8) + t) >> 8) >> precision
    }
}

@inline(__always) func floorDiv(_ a: Int, _ b: Int) -> Int {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}
