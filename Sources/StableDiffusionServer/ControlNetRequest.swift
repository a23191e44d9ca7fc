import Foundation
import StableDiffusion

/// A ControlNet loaded by `sd serve --controlnet MODEL`, under the name A1111's `/controlnet/model_list` gives.
public struct ServedControlNet: Sendable {
    /// The folder name, the file name without its extension, or the Hub repo's name (never a server path).
    public let name: String
    public let model: ControlNetModel

    public init(name: String, model: ControlNetModel) {
        self.name = name
        self.model = model
    }

    /// Loads what `--controlnet` names (see `ControlNetModel.load`).
    public static func load(_ argument: String, precision: ComputePrecision, progress: HubProgressHandler?) throws -> ServedControlNet {
        let model = try ControlNetModel.load(argument, precision: precision, progress: progress)
        let name: String
        if FileManager.default.fileExists(atPath: argument) {
            let url = URL(fileURLWithPath: argument)
            name = url.hasDirectoryPath || url.pathExtension.isEmpty ? url.lastPathComponent : url.deletingPathExtension().lastPathComponent
        } else {
            name = String(argument.split(separator: "@")[0].split(separator: "/").last ?? Substring(argument))
        }
        return ServedControlNet(name: name, model: model)
    }
}

/// One sd-webui-controlnet unit of a request (`alwayson_scripts.controlnet.args[i]`), checked, in the
/// engine's terms; the preprocessor runs on the worker (the depth module needs the model's estimator).
struct ControlNetRequest: Sendable {
    /// The server's name of the ControlNet (`ServedControlNet.name`).
    var model: String
    var module: ControlPreprocessor
    /// nil: the img2img input picture (the web UI's "use the input image").
    var image: Image?
    var weight: Float
    var guidanceStart: Double
    var guidanceEnd: Double
    var resizeMode: ImageResizeMode
    /// The short side the preprocessor runs at (`processor_res`); nil with `pixelPerfect`.
    var processorResolution: Int
    var pixelPerfect: Bool
    /// canny's low and high thresholds (`threshold_a`, `threshold_b`).
    var thresholdA: Double
    var thresholdB: Double
    /// 0 Balanced, 1 My prompt is more important, 2 ControlNet is more important.
    var controlMode: Int

    /// The web UI's names of the control modes and resize modes, in their numeric order.
    static let controlModes = ["Balanced", "My prompt is more important", "ControlNet is more important"]
    static let resizeModes: [(String, ImageResizeMode)] = [("Just Resize", .default), ("Crop and Resize", .crop), ("Resize and Fill", .fill)]

    /// The control image for a generation of `width` x `height`: the module's output at `processor_res`
    /// (or the pixel-perfect resolution), then fitted by the pipeline.
    func controlImage(input: Image?, width: Int, height: Int, depthEstimator: (any DepthEstimating)?) throws -> Image {
        guard let picture = image ?? input else {
            throw APIError.invalid("alwayson_scripts", "ControlNet unit for \(model) has no image (txt2img needs one)")
        }
        guard module != .none else { return picture.hwc3() }
        // sd-webui-controlnet's pixel perfect: the processor resolution that maps the picture onto the
        // generation without rescaling the detected map again.
        let short = Double(min(picture.width, picture.height))
        let k0 = Double(height) / Double(picture.height), k1 = Double(width) / Double(picture.width)
        let perfect = Int(((resizeMode == .fill ? min(k0, k1) : max(k0, k1)) * short).rounded(.toNearestOrEven))
        let resolution = pixelPerfect ? perfect : processorResolution
        let k = Double(resolution) / short
        let w = max(1, Int((Double(picture.width) * k).rounded(.toNearestOrEven)))
        let h = max(1, Int((Double(picture.height) * k).rounded(.toNearestOrEven)))
        let sized = (w, h) == (picture.width, picture.height) ? picture.hwc3()
            : try picture.hwc3().resized(width: w, height: h, filter: .lanczos)
        let low = thresholdA < 0 ? ControlPreprocessor.defaultCannyLow : thresholdA
        let high = thresholdB < 0 ? ControlPreprocessor.defaultCannyHigh : thresholdB
        return try module.run(sized, low: low, high: high, depthEstimator: depthEstimator)
    }
}

extension ServedModel {
    /// The request's ControlNet units as library units (its pictures preprocessed), and whether guess mode
    /// is on (a unit in "ControlNet is more important"). Runs on the worker.
    func controlNetUnits(_ request: GenerationRequest, options: GenerationOptions, pipes: Pipelines) throws -> (units: [ControlNetUnit], guessMode: Bool) {
        guard !request.controlNets.isEmpty else { return ([], false) }
        var input: Image?
        switch request.task {
        case .img2img(let image, _), .inpaint(let image, _, _, _): input = image
        default: input = nil
        }
        let width = options.width ?? input?.width ?? defaultSide
        let height = options.height ?? input?.height ?? defaultSide
        let units = try request.controlNets.map { unit -> ControlNetUnit in
            guard let served = controlNets.first(where: { StableDiffusionServer.names(unit.model, $0.name) }) else {
                throw APIError.invalid("alwayson_scripts", "ControlNet model \"\(unit.model)\" is not loaded")
            }
            let image = try unit.controlImage(input: input, width: width, height: height, depthEstimator: pipes.depth?.depthEstimator)
            return ControlNetUnit(model: served.model, image: image, conditioningScale: unit.weight, guidanceStart: unit.guidanceStart,
                                  guidanceEnd: unit.guidanceEnd, resizeMode: unit.resizeMode, decayingScales: unit.controlMode == 1)
        }
        return (units, request.controlNets.contains { $0.controlMode == 2 })
    }

    /// sd-webui-controlnet's infotext: `ControlNet 0: "Module: canny, Model: ..., Weight: 1.0, ..."` per unit.
    func controlNetInfo(_ request: GenerationRequest) -> [(String, String)] {
        request.controlNets.enumerated().map { i, u in
            let resize = ControlNetRequest.resizeModes.first { $0.1 == u.resizeMode }?.0 ?? "Just Resize"
            let fields = ["Module: \(u.module.rawValue)", "Model: \(u.model)", "Weight: \(u.weight)", "Resize Mode: \(resize)",
                          "Processor Res: \(u.processorResolution)", "Threshold A: \(u.thresholdA)", "Threshold B: \(u.thresholdB)",
                          "Guidance Start: \(u.guidanceStart)", "Guidance End: \(u.guidanceEnd)",
                          "Pixel Perfect: \(u.pixelPerfect ? "True" : "False")", "Control Mode: \(ControlNetRequest.controlModes[u.controlMode])"]
            return ("ControlNet \(i)", "\"\(fields.joined(separator: ", "))\"")
        }
    }

    /// The preprocessors this server can run: depth only with a depth model's estimator.
    var controlModules: [ControlPreprocessor] {
        ControlPreprocessor.allCases.filter { $0 != .depth || active.depth?.depthEstimator != nil }
    }
}
