import ArgumentParser
import Foundation
import StableDiffusion

/// `--controlnet MODEL[:SCALE]` with `--control-image FILE` (each repeatable, in the same order),
/// `--control-guidance-start/-end` and `--guess-mode`: diffusers' ControlNet pipelines (several ControlNets are
/// summed, as `MultiControlNetModel`).
struct ControlNetArguments: ParsableArguments {
    @Option(name: .customLong("controlnet"),
            help: "A ControlNet, MODEL[:SCALE]: a diffusers folder, an original-layout file (control_v11p_sd15_canny.pth) or a Hub repo id; repeatable. SCALE default: the pipeline's (1; img2img 0.8; SD inpainting 0.5).")
    var controlNets: [String] = []

    @Option(name: .customLong("control-image"), help: "The control image (an edge map, depth map, ...) for each --controlnet, in the same order; see `sd detect`.")
    var controlImages: [String] = []

    @Option(help: "The fraction of the steps after which the ControlNets start to apply, in [0, 1).")
    var controlGuidanceStart: Double = 0

    @Option(help: "The fraction of the steps after which the ControlNets stop, in (start, 1].")
    var controlGuidanceEnd: Double = 1

    @Flag(help: "ControlNet guess mode: the ControlNets see only the prompt's half of the guidance batch (guidance 3-5 recommended).")
    var guessMode = false

    func validate() throws {
        guard controlImages.count == controlNets.count else {
            throw ValidationError("give one --control-image per --controlnet (\(controlNets.count) ControlNet(s), \(controlImages.count) image(s))")
        }
        for path in controlImages where !FileManager.default.fileExists(atPath: path) {
            throw ValidationError("--control-image: \(path) does not exist")
        }
        for argument in controlNets {
            let name: String
            do { name = try ScaledArgument.split(argument, what: "--controlnet").name } catch { throw ValidationError("\(error)") }
            if !FileManager.default.fileExists(atPath: name), (try? HubRepoID.parseUnlessLocal(name)) == nil {
                throw ValidationError("--controlnet: \(name) does not exist and is not a Hub repo id (a ControlNet folder, an original-layout .pth/.safetensors file, or owner/name)")
            }
        }
        guard controlGuidanceStart >= 0, controlGuidanceEnd <= 1, controlGuidanceStart < controlGuidanceEnd else {
            throw ValidationError("--control-guidance-start and --control-guidance-end must satisfy 0 <= start < end <= 1, got \(controlGuidanceStart) and \(controlGuidanceEnd)")
        }
        if guessMode && controlNets.isEmpty { throw ValidationError("--guess-mode needs a --controlnet") }
    }

    /// Loads the ControlNets (in the model's precision) with their images.
    func units(precision: ComputePrecision) throws -> [ControlNetUnit] {
        try zip(controlNets, controlImages).map { argument, imagePath in
            let (name, scale) = try ScaledArgument.split(argument, what: "--controlnet")
            let model = try ControlNetModel.load(name, precision: precision, progress: DownloadProgressBar.forStderr()?.update)
            return ControlNetUnit(model: model, image: try Image.load(path: imagePath), conditioningScale: scale,
                                  guidanceStart: controlGuidanceStart, guidanceEnd: controlGuidanceEnd)
        }
    }

    /// `o` with the ControlNets loaded and guess mode set.
    func apply(to o: GenerationOptions, precision: ComputePrecision) throws -> GenerationOptions {
        var o = o
        o.controlNets = try units(precision: precision)
        o.guessMode = guessMode
        return o
    }

    /// The sd-webui-controlnet infotext field per unit (`ControlNet 0: "Module: none, Model: ..., Weight: ..."`).
    func infotext(task: ControlNetTask, family: ModelFamily) -> [(String, String)] {
        controlNets.enumerated().map { i, argument in
            let (name, scale) = (try? ScaledArgument.split(argument, what: "--controlnet")) ?? (argument, nil)
            let weight = scale ?? task.defaultScale(family)
            let fields = ["Module: none", "Model: \(URL(fileURLWithPath: name).lastPathComponent)", "Weight: \(weight)",
                          "Guidance Start: \(controlGuidanceStart)", "Guidance End: \(controlGuidanceEnd)",
                          "Control Mode: \(guessMode ? "ControlNet is more important" : "Balanced")"]
            return ("ControlNet \(i)", "\"\(fields.joined(separator: ", "))\"")
        }
    }
}
