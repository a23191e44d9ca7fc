/// How `preprocess` fits an image to the target size (diffusers' `resize_mode`).
public enum ImageResizeMode: String, Sendable {
    /// Stretch to the target size.
    case `default`
    /// Keep the aspect ratio, centre, and fill the borders by stretching the image's edge rows/columns.
    case fill
    /// Keep the aspect ratio, centre, and crop the excess.
    case crop
}

/// diffusers' `VaeImageProcessor` for images given as PIL images (here `Image`), with the same
/// configuration fields and the same order of operations, so tensors match diffusers exactly.
/// Tensors are NHWC: `[batch, height, width, channels]`.
public struct VaeImageProcessor: Sendable, Equatable {
    public var doResize: Bool
    public var vaeScaleFactor: Int
    public var vaeLatentChannels: Int
    public var resample: ResampleFilter
    public var doNormalize: Bool
    public var doBinarize: Bool
    public var doConvertRGB: Bool
    public var doConvertGrayscale: Bool

    /// Same defaults as diffusers (`resample="lanczos"`, normalise to [-1, 1]).
    public init(doResize: Bool = true, vaeScaleFactor: Int = 8, vaeLatentChannels: Int = 4,
                resample: ResampleFilter = .lanczos, doNormalize: Bool = true, doBinarize: Bool = false,
                doConvertRGB: Bool = false, doConvertGrayscale: Bool = false) throws {
        guard !(doConvertRGB && doConvertGrayscale) else {
            throw ImageError.invalidArgument("doConvertRGB and doConvertGrayscale can not both be true")
        }
        guard vaeScaleFactor > 0 else { throw ImageError.invalidArgument("vaeScaleFactor must be positive, got \(vaeScaleFactor)") }
        self.doResize = doResize
        self.vaeScaleFactor = vaeScaleFactor
        self.vaeLatentChannels = vaeLatentChannels
        self.resample = resample
        self.doNormalize = doNormalize
        self.doBinarize = doBinarize
        self.doConvertRGB = doConvertRGB
        self.doConvertGrayscale = doConvertGrayscale
    }

    /// The inpainting pipeline's `mask_processor`: no normalisation, binarised at 0.5, grayscale.
    public static func maskProcessor(vaeScaleFactor: Int = 8) -> VaeImageProcessor {
        VaeImageProcessor(unchecked: vaeScaleFactor, doNormalize: false, doBinarize: true, doConvertGrayscale: true)
    }

    private init(unchecked vaeScaleFactor: Int, doNormalize: Bool, doBinarize: Bool, doConvertGrayscale: Bool) {
        doResize = true
        self.vaeScaleFactor = max(1, vaeScaleFactor)
        vaeLatentChannels = 4
        resample = .lanczos
        self.doNormalize = doNormalize
        self.doBinarize = doBinarize
        doConvertRGB = false
        self.doConvertGrayscale = doConvertGrayscale
    }

    /// `get_default_height_width`: the given or the image's size, rounded down to a multiple of the
    /// VAE scale factor (so e.g. 23 becomes 16 and 7 becomes 0, as in diffusers).
    public func defaultHeightWidth(for image: Image, height: Int? = nil, width: Int? = nil) -> (height: Int, width: Int) {
        let h = height ?? image.height, w = width ?? image.width
        return (h - h % vaeScaleFactor, w - w % vaeScaleFactor)
    }

    /// `VaeImageProcessor.resize` for PIL inputs.
    public func resize(_ image: Image, height: Int, width: Int, mode: ImageResizeMode = .default) throws -> Image {
        switch mode {
        case .default: return try image.resized(width: width, height: height, filter: resample)
        case .fill: return try resizeAndFill(image, width: width, height: height)
        case .crop: return try resizeAndCrop(image, width: width, height: height)
        }
    }

    /// The PIL-stage part of `preprocess` (crop, resize, mode conversion), before the tensor is made.
    public func preprocessImages(_ images: [Image], height: Int? = nil, width: Int? = nil,
                                 resizeMode: ImageResizeMode = .default, cropCoords: CropRegion? = nil) throws -> [Image] {
        guard let first = images.first else { throw ImageError.invalidArgument("preprocess needs at least one image") }
        var out = images
        if let r = cropCoords {
            out = try out.map { try $0.cropped(left: r.x1, top: r.y1, right: r.x2, bottom: r.y2) }
        }
        if doResize {
            let (h, w) = defaultHeightWidth(for: cropCoords == nil ? first : out[0], height: height, width: width)
            guard h > 0, w > 0 else {
                throw ImageError.badDimensions(file: "<input>", detail: "target size \(w)x\(h) (image \(out[0].width)x\(out[0].height) is smaller than the VAE scale factor \(vaeScaleFactor)?)")
            }
            out = try out.map { try resize($0, height: h, width: w, mode: resizeMode) }
        }
        if doConvertRGB { out = out.map { $0.toRGB() } } else if doConvertGrayscale { out = out.map { $0.toGrayscale() } }
        return out
    }

    /// `VaeImageProcessor.preprocess` for PIL images: `[batch, height, width, channels]`, values in
    /// [-1, 1] (`doNormalize`), or {0, 1} (`doBinarize`).
    public func preprocess(_ images: [Image], height: Int? = nil, width: Int? = nil,
                           resizeMode: ImageResizeMode = .default, cropCoords: CropRegion? = nil) throws -> Tensor {
        let processed = try preprocessImages(images, height: height, width: width, resizeMode: resizeMode, cropCoords: cropCoords)
        let f = processed[0]
        guard processed.allSatisfy({ $0.width == f.width && $0.height == f.height && $0.channels == f.channels }) else {
            throw ImageError.invalidArgument("images of a batch differ in size or channels (set doResize)")
        }
        let per = f.pixels.count
        var t = Tensor(uninitializedShape: [processed.count, f.height, f.width, f.channels])
        let normalize = doNormalize, binarize = doBinarize
        t.withUnsafeMutableBufferPointer { o in
            for (b, im) in processed.enumerated() {
                for i in 0..<per {
                    // float32 throughout, as numpy/torch: x / 255, then 2x - 1.
                    var v = Float(im.pixels[i]) / Float(255)
                    if normalize { v = 2 * v - 1 }
                    if binarize { v = v < 0.5 ? 0 : 1 }
                    o[b * per + i] = v
                }
            }
        }
        return t
    }

    /// Single-image convenience for `preprocess`.
    public func preprocess(_ image: Image, height: Int? = nil, width: Int? = nil,
                           resizeMode: ImageResizeMode = .default, cropCoords: CropRegion? = nil) throws -> Tensor {
        try preprocess([image], height: height, width: width, resizeMode: resizeMode, cropCoords: cropCoords)
    }

    /// `postprocess(output_type="pil")`: `(x * 0.5 + 0.5).clamp(0, 1)` when denormalising (per image:
    /// `doDenormalize`, default `doNormalize`), then `round(x * 255)` to 8 bits.
    public func postprocess(_ tensor: Tensor, doDenormalize: [Bool]? = nil) throws -> [Image] {
        guard tensor.rank == 4 else { throw ImageError.invalidArgument("postprocess expects NHWC, got \(tensor.shape)") }
        let n = tensor.shape[0]
        if let d = doDenormalize, d.count != n {
            throw ImageError.invalidArgument("doDenormalize has \(d.count) entries for \(n) images")
        }
        guard [1, 3, 4].contains(tensor.shape[3]), tensor.shape[1] > 0, tensor.shape[2] > 0,
              tensor.shape[1] <= Image.maxDimension, tensor.shape[2] <= Image.maxDimension else {
            throw ImageError.invalidArgument("postprocess expects [batch, height, width, 1|3|4], got \(tensor.shape)")
        }
        let (h, w, c) = (tensor.shape[1], tensor.shape[2], tensor.shape[3])
        let per = h * w * c
        return tensor.withUnsafeBufferPointer { buf in
            (0..<n).map { b in
                let denormalize = doDenormalize?[b] ?? doNormalize
                var px = [UInt8](repeating: 0, count: per)
                for i in 0..<per {
                    let x = buf[b * per + i]
                    if denormalize {
                        px[i] = Image.quantize(min(max(x * 0.5 + 0.5, 0), 1))
                    } else {
                        // Not clamped in diffusers: numpy's float -> uint8 cast wraps modulo 256 (x86).
                        let v = (x * 255).rounded(.toNearestOrEven)
                        px[i] = v.isFinite && abs(v) < 1e9 ? UInt8(truncatingIfNeeded: Int(v)) : 0
                    }
                }
                return Image(unchecked: w, h, c, px)
            }
        }
    }

    // MARK: fill / crop resizing

    /// `_resize_and_fill`: aspect-preserving resize, centred on black, borders filled by stretching the
    /// outermost source row/column band (PIL resize of a zero-height/width box). diffusers passes no
    /// `resample` for the bands, so they use PIL's default, bicubic, whatever `resample` is.
    func resizeAndFill(_ image: Image, width: Int, height: Int) throws -> Image {
        let ratio = Double(width) / Double(height)
        let srcRatio = Double(image.width) / Double(image.height)
        let srcW = ratio < srcRatio ? width : image.width * height / image.height
        let srcH = ratio >= srcRatio ? height : image.height * width / image.width
        let resized = try image.resized(width: srcW, height: srcH, filter: resample).toRGB()
        var res = try Image(width: width, height: height, channels: 3)
        res.paste(resized, x: width / 2 - srcW / 2, y: height / 2 - srcH / 2)
        if ratio < srcRatio {
            let fillHeight = height / 2 - srcH / 2
            if fillHeight > 0 {
                let top = try resized.resized(width: width, height: fillHeight, filter: .bicubic, box: (0, 0, Double(width), 0))
                res.paste(top, x: 0, y: 0)
                let h = Double(resized.height)
                let bottom = try resized.resized(width: width, height: fillHeight, filter: .bicubic, box: (0, h, Double(width), h))
                res.paste(bottom, x: 0, y: fillHeight + srcH)
            }
        } else if ratio > srcRatio {
            let fillWidth = width / 2 - srcW / 2
            if fillWidth > 0 {
                let left = try resized.resized(width: fillWidth, height: height, filter: .bicubic, box: (0, 0, 0, Double(height)))
                res.paste(left, x: 0, y: 0)
                let w = Double(resized.width)
                let right = try resized.resized(width: fillWidth, height: height, filter: .bicubic, box: (w, 0, w, Double(height)))
                res.paste(right, x: fillWidth + srcW, y: 0)
            }
        }
        return res
    }

    /// `_resize_and_crop`: aspect-preserving resize covering the target, centred, excess cropped.
    func resizeAndCrop(_ image: Image, width: Int, height: Int) throws -> Image {
        let ratio = Double(width) / Double(height)
        let srcRatio = Double(image.width) / Double(image.height)
        let srcW = ratio > srcRatio ? width : image.width * height / image.height
        let srcH = ratio <= srcRatio ? height : image.height * width / image.width
        let resized = try image.resized(width: srcW, height: srcH, filter: resample)
        var res = try Image(width: width, height: height, channels: 3)
        res.paste(resized, x: width / 2 - srcW / 2, y: height / 2 - srcH / 2)
        return res
    }
}
