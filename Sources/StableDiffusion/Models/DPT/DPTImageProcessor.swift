import Foundation
import DiffusionTensor

/// transformers 5.24's `DPTImageProcessor` (the torchvision backend, which is what `DPTImageProcessor`
/// means there) for 8-bit RGB images: resize the uint8 image with torch's antialiased uint8 kernel
/// (fixed-point int16 weights, horizontal pass then vertical, each rounded and clamped to uint8), then
/// `(x - mean * 255) / (std * 255)` in fp32.
public struct DPTImageProcessor: Sendable, Equatable {
    public enum Resample: Int, Sendable { case bilinear = 2, bicubic = 3 }

    public var doResize: Bool
    public var height: Int, width: Int
    public var resample: Resample
    public var keepAspectRatio: Bool
    public var ensureMultipleOf: Int
    public var doRescale: Bool
    public var rescaleFactor: Double
    public var doNormalize: Bool
    public var imageMean: [Double]
    public var imageStd: [Double]

    /// transformers' defaults (`resample` BICUBIC, ImageNet-standard mean/std 0.5).
    public init(height: Int = 384, width: Int = 384, resample: Resample = .bicubic, keepAspectRatio: Bool = false,
                ensureMultipleOf: Int = 1, doResize: Bool = true, doRescale: Bool = true, rescaleFactor: Double = 1.0 / 255,
                doNormalize: Bool = true, imageMean: [Double] = [0.5, 0.5, 0.5], imageStd: [Double] = [0.5, 0.5, 0.5]) {
        self.height = height; self.width = width; self.resample = resample; self.keepAspectRatio = keepAspectRatio
        self.ensureMultipleOf = ensureMultipleOf; self.doResize = doResize; self.doRescale = doRescale
        self.rescaleFactor = rescaleFactor; self.doNormalize = doNormalize; self.imageMean = imageMean; self.imageStd = imageStd
    }

    /// Reads `preprocessor_config.json` (a `feature_extractor/` folder's).
    public static func load(from url: URL) throws -> DPTImageProcessor {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ModelConfigError(file: url.path, key: "", reason: "cannot read file")
        }
        return try DPTImageProcessor(jsonData: data, file: url.path)
    }

    /// Loads `directory/preprocessor_config.json`.
    public init(directory: URL) throws {
        self = try Self.load(from: directory.appendingPathComponent("preprocessor_config.json"))
    }

    public init(jsonData: Data, file: String = "feature_extractor/preprocessor_config.json") throws {
        let r = try ConfigReader(file: file, data: jsonData)
        self.init()
        doResize = try r.bool("do_resize", default: true)
        if let size = r.value("size") {
            if let s = size.intValue {
                height = s; width = s
            } else if let o = size.objectValue, let h = o["height"]?.intValue, let w = o["width"]?.intValue, o.count == 2 {
                height = h; width = w
            } else {
                throw r.error("size", "expected an integer or {\"height\", \"width\"}, got \(size)")
            }
        }
        guard height > 0, width > 0 else { throw r.error("size", "must be positive") }
        let resampleCode = try r.int("resample", default: 3)
        guard let rs = Resample(rawValue: resampleCode) else {
            throw r.error("resample", "\(resampleCode) is not supported (2 = bilinear, 3 = bicubic)")
        }
        resample = rs
        keepAspectRatio = try r.bool("keep_aspect_ratio", default: false)
        ensureMultipleOf = try r.int("ensure_multiple_of", default: 1)
        guard ensureMultipleOf > 0 else { throw r.error("ensure_multiple_of", "must be positive") }
        doRescale = try r.bool("do_rescale", default: true)
        rescaleFactor = try r.double("rescale_factor", default: 1.0 / 255)
        doNormalize = try r.bool("do_normalize", default: true)
        imageMean = try Self.triple(r, "image_mean") ?? imageMean
        imageStd = try Self.triple(r, "image_std") ?? imageStd
        guard !doNormalize || imageStd.allSatisfy({ $0 != 0 }) else { throw r.error("image_std", "must not contain 0") }
        try r.require("do_pad", oneOf: [.bool(false)])
        try r.require("do_center_crop", oneOf: [.bool(false)])
        try r.require("do_reduce_labels", oneOf: [.bool(false)])
        try r.require("reduce_labels", oneOf: [.bool(false)])
        try r.finish(ignoring: ["feature_extractor_type", "image_processor_type", "processor_class", "size_divisor",
                                "crop_size", "default_to_square", "do_convert_rgb"])
    }

    private static func triple(_ r: ConfigReader, _ key: String) throws -> [Double]? {
        guard let v = r.value(key) else { return nil }
        if let d = v.doubleValue { return [d, d, d] }
        guard let list = try r.doubleList(key), list.count == 3 else { throw r.error(key, "expected 3 numbers, got \(v)") }
        return list
    }

    /// The size the image is resized to (transformers' `get_resize_output_image_size`, with Python's
    /// round-half-to-even).
    public func outputSize(height inH: Int, width inW: Int) -> (height: Int, width: Int) {
        guard doResize else { return (inH, inW) }
        var sh = Double(height) / Double(inH), sw = Double(width) / Double(inW)
        if keepAspectRatio {
            if abs(1 - sw) < abs(1 - sh) { sh = sw } else { sw = sh }
        }
        func constrain(_ v: Double) -> Int {
            let m = Double(ensureMultipleOf)
            var x = (v / m).rounded(.toNearestOrEven) * m
            if x < 0 { x = (v / m).rounded(.up) * m }
            return Int(x)
        }
        return (constrain(sh * Double(inH)), constrain(sw * Double(inW)))
    }

    /// `pixel_values` of one image: `[1, H, W, 3]` (NHWC) from `height` rows of `width` RGB byte triples.
    public func preprocess(rgb8: [UInt8], width w: Int, height h: Int) throws -> Tensor {
        guard w > 0, h > 0, rgb8.count == w * h * 3 else {
            throw TensorError.invalidArgument("image of \(w)x\(h) RGB needs \(w * h * 3) bytes, got \(rgb8.count)")
        }
        let (oh, ow) = outputSize(height: h, width: w)
        guard oh > 0, ow > 0 else { throw TensorError.invalidArgument("image of \(w)x\(h) resizes to \(ow)x\(oh)") }
        var pixels = rgb8
        var (ch, cw) = (h, w)
        if ow != cw {
            pixels = Self.resampleAxis(pixels, lines: ch, lineStride: cw * 3, step: 3, input: cw, output: ow, filter: resample,
                                       outLineStride: ow * 3, outStep: 3)
            cw = ow
        }
        if oh != ch {
            // Columns: each x (and channel) is a line along y.
            pixels = Self.resampleAxis(pixels, lines: cw, lineStride: 3, step: cw * 3, input: ch, output: oh, filter: resample,
                                       outLineStride: 3, outStep: cw * 3)
            ch = oh
        }
        var out = Tensor(uninitializedShape: [1, ch, cw, 3])
        // transformers fuses rescale into normalise: mean and std are multiplied by 1/rescale_factor in fp32.
        let inverse = Float(1 / rescaleFactor)
        let mean = imageMean.map { Float($0) * (doRescale ? inverse : 1) }
        let std = imageStd.map { Float($0) * (doRescale ? inverse : 1) }
        let scale = Float(rescaleFactor)
        out.withUnsafeMutableBufferPointer { p in
            for i in 0..<(ch * cw) {
                for c in 0..<3 {
                    let v = Float(pixels[i * 3 + c])
                    if doNormalize {
                        p[i * 3 + c] = (v - mean[c]) / std[c]
                    } else {
                        p[i * 3 + c] = doRescale ? v * scale : v
                    }
                }
            }
        }
        return out
    }

    /// `pixel_values` of NHWC images whose values are whole numbers in 0...255 (`[batch, H, W, 3]` or `[H, W, 3]`),
    /// e.g. a decoded 8-bit image held as floats. Other values are an error: the resize works on bytes.
    public func preprocess(image: Tensor) throws -> Tensor {
        let shape = image.rank == 3 ? [1] + image.shape : image.shape
        guard shape.count == 4, shape[3] == 3 else { throw TensorError.shapeMismatch("expected [batch, H, W, 3] or [H, W, 3], got \(image.shape)") }
        let values = image.scalars
        if let bad = values.first(where: { !($0 >= 0 && $0 <= 255 && $0 == $0.rounded()) }) {
            throw TensorError.invalidArgument("image values must be whole numbers in 0...255, found \(bad)")
        }
        let per = shape[1] * shape[2] * 3
        let images = (0..<shape[0]).map { b in
            (rgb8: values[(b * per)..<((b + 1) * per)].map { UInt8($0) }, width: shape[2], height: shape[1])
        }
        return try preprocess(images: images)
    }

    /// `pixel_values` of several images (each resized to the configured size): `[batch, H, W, 3]`.
    public func preprocess(images: [(rgb8: [UInt8], width: Int, height: Int)]) throws -> Tensor {
        let each = try images.map { try preprocess(rgb8: $0.rgb8, width: $0.width, height: $0.height) }
        guard let first = each.first else { throw TensorError.invalidArgument("no images to preprocess") }
        guard each.allSatisfy({ $0.shape == first.shape }) else {
            throw TensorError.invalidArgument("images resize to different sizes (keep_aspect_ratio); preprocess them one by one")
        }
        return try Tensor.concatenate(each, axis: 0)
    }

    // MARK: torch's uint8 antialiased resampling

    /// Per output index: first input index, tap count, int16 taps; plus the fixed-point precision
    /// (ATen `_compute_index_ranges_int16_weights` with antialias, align_corners=False, no scale given).
    static func int16Weights(input: Int, output: Int, filter: Resample) -> (start: [Int], count: [Int], taps: [[Int32]], precision: Int) {
        let scale = Double(input) / Double(output)
        let interpSize = filter == .bilinear ? 2.0 : 4.0
        let support = scale >= 1 ? interpSize * 0.5 * scale : interpSize * 0.5
        let maxTaps = Int(support.rounded(.up)) * 2 + 1
        let invScale = scale >= 1 ? 1 / scale : 1
        func kernel(_ x: Double) -> Double {
            let a = abs(x)
            switch filter {
            case .bilinear: return a < 1 ? 1 - a : 0
            case .bicubic:
                let c = -0.5  // Keys' a, as PIL and ATen's antialiased path use
                if a < 1 { return ((c + 2) * a - (c + 3)) * a * a + 1 }
                if a < 2 { return ((c * a - 5 * c) * a + 8 * c) * a - 4 * c }
                return 0
            }
        }
        var starts = [Int](), counts = [Int](), weights = [[Double]]()
        var wmax = 0.0
        for i in 0..<output {
            let center = scale * (Double(i) + 0.5)
            // C++ casts truncate toward zero.
            let xmin = max(Int((center - support + 0.5).rounded(.towardZero)), 0)
            let xsize = min(max(min(Int((center + support + 0.5).rounded(.towardZero)), input) - xmin, 0), maxTaps)
            var w = (0..<xsize).map { j in kernel((Double(j + xmin) - center + 0.5) * invScale) }
            let total = w.reduce(0, +)
            if total != 0 {
                w = w.map { $0 / total }
                wmax = max(wmax, w.max() ?? 0)
            }
            starts.append(xmin); counts.append(xsize); weights.append(w)
        }
        var precision = 0
        while precision < 22 {
            if Int(0.5 + wmax * Double(1 << (precision + 1))) >= 1 << 15 { break }
            precision += 1
        }
        let taps = weights.map { row in
            row.map { w -> Int32 in
                let v = w * Double(1 << precision)
                return Int32((v < 0 ? -0.5 + v : 0.5 + v).rounded(.towardZero))
            }
        }
        return (starts, counts, taps, precision)
    }

    /// Resamples every line of a uint8 image along one axis: `lines` lines starting `lineStride` apart,
    /// samples `step` apart, 3 channels each.
    static func resampleAxis(_ src: [UInt8], lines: Int, lineStride: Int, step: Int, input: Int, output: Int,
                             filter: Resample, outLineStride: Int, outStep: Int) -> [UInt8] {
        let (starts, counts, taps, precision) = int16Weights(input: input, output: output, filter: filter)
        // Either way the result holds `lines * output` RGB pixels.
        var dst = [UInt8](repeating: 0, count: lines * output * 3)
        let half: Int32 = precision > 0 ? 1 << (precision - 1) : 0
        for line in 0..<lines {
            for o in 0..<output {
                let k = taps[o]
                for c in 0..<3 {
                    var acc = half
                    for j in 0..<counts[o] {
                        acc += Int32(src[line * lineStride + (starts[o] + j) * step + c]) * k[j]
                    }
                    let v = acc >> Int32(precision)
                    dst[line * outLineStride + o * outStep + c] = UInt8(min(max(v, 0), 255))
                }
            }
        }
        return dst
    }
}
