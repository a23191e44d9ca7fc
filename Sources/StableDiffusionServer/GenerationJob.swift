import Foundation
import DiffusionTensor
import StableDiffusion

/// One request's work, in the engine's terms, whichever API it came through.
struct GenerationRequest: Sendable {
    enum Task: Sendable {
        case txt2img
        case img2img(Image, strength: Double)
        case inpaint(Image, mask: Image, strength: Double, paddingMaskCrop: Int?)
        /// `depth`: a depth map the client sent (H, W); nil: estimated by the model's depth estimator.
        case depth2img(Image, strength: Double, depth: Tensor?)
        case upscale(Image, noiseLevel: Int)

        var pipelineName: String {
            switch self {
            case .txt2img: return "txt2img"
            case .img2img: return "img2img"
            case .inpaint: return "inpaint"
            case .depth2img: return "depth2img"
            case .upscale: return "upscale"
            }
        }
    }

    var task: Task
    var prompt: String
    /// nil for the empty (unconditional) prompt, as the CLI without --negative-prompt.
    var negativePrompt: String?
    var steps: Int
    var guidanceScale: Float
    var width: Int?
    var height: Int?
    /// An engine scheduler name (`Schedulers.cliNames`); nil keeps the model's.
    var scheduler: String?
    var eta: Float?
    /// The first picture's seed; picture i uses seed + i (A1111's `all_seeds`), each run on its own, so
    /// picture i is exactly what `sd ... --seed (seed+i)` draws.
    var seed: UInt64
    var count: Int
    /// The client's name for this job (A1111's `force_task_id`), for /internal/progress.
    var taskID: String? = nil
    /// A1111's `refiner_switch_at`, when the request asked for the loaded refiner (`refiner_checkpoint`).
    var refinerSwitch: Double? = nil
    /// The model the client picked (A1111's `sd_model_checkpoint`, OpenAI's `model`); nil: the server's own.
    /// Only a shared queue routes on it: a server with one model checks the name when it reads the request.
    var model: String? = nil
    /// sd-webui-controlnet units (`alwayson_scripts.controlnet`), for the ControlNets the server loaded.
    var controlNets: [ControlNetRequest] = []

    /// Picks a random seed the way A1111 does (below 2^32 - 1) when the client sent -1.
    static func resolveSeed(_ seed: UInt64?) -> UInt64 { seed ?? UInt64.random(in: 0..<4_294_967_294) }

    func options(index: Int) -> GenerationOptions {
        var o = GenerationOptions(prompt: prompt, negativePrompt: negativePrompt)
        o.numInferenceSteps = steps
        o.guidanceScale = guidanceScale
        o.width = width
        o.height = height
        o.scheduler = scheduler
        o.eta = eta ?? Schedulers.defaultEta(cliName: scheduler, config: nil)
        o.seed = seed &+ UInt64(index)
        return o
    }

    var extraInfo: [(String, String)] {
        switch task {
        case .txt2img: return []
        case .img2img(_, let s), .inpaint(_, _, let s, _), .depth2img(_, let s, _): return [("Denoising strength", String(s))]
        case .upscale(_, let n): return [("Noise level", String(n))]
        }
    }
}

/// A finished picture: the PNG (with its `parameters` chunk), its seed and that text.
struct GeneratedImage: Sendable, Codable {
    let png: [UInt8]
    let seed: UInt64
    let infotext: String
    let width: Int
    let height: Int
}

struct GenerationOutput: Sendable, Codable {
    var images: [GeneratedImage] = []
    /// The scheduler class that ran (e.g. `EulerDiscreteScheduler`).
    var schedulerClass = ""
    /// Stopped by /interrupt before every picture was finished: the last picture is the one being drawn
    /// then, decoded from its denoised estimate at that step (as A1111 returns it).
    var interrupted = false
}

extension ServedModel {
    /// Runs `request` picture by picture on the calling thread. `progress` gets (picture index, step,
    /// steps) and returns false to cancel; pictures finished before a cancel are kept. `interruption` stops
    /// the picture being drawn after its current step, with that picture (A1111's Interrupt), and the rest.
    func generate(_ request: GenerationRequest, interruption: PipelineInterruption? = nil,
                  progress: @escaping (Int, PipelineProgress) -> Bool) throws -> GenerationOutput {
        var output = GenerationOutput()
        let (prompt, loras) = try promptLoRAs(request.prompt)
        let pipes = try pipelines(adding: loras)
        if request.refinerSwitch != nil {
            switch request.task {
            case .txt2img, .img2img: break
            default: throw APIError.invalid("refiner_checkpoint", "the refiner follows txt2img and img2img only, not \(request.task.pipelineName)")
            }
        }
        // Control images are preprocessed once for every picture of the request.
        let control = try controlNetUnits(request, options: request.options(index: 0), pipes: pipes)
        for i in 0..<request.count {
            if i > 0, interruption?.isInterrupted == true {
                output.interrupted = true
                return output
            }
            var options = request.options(index: i)
            options.prompts = [prompt]
            options.promptSyntax = promptSyntax
            options.interruption = interruption
            (options.controlNets, options.guessMode) = control
            let result: GenerationResult
            do {
                if let switchAt = request.refinerSwitch, let refiner {
                    result = try RefinerEnsemble.run(options, switchAt: switchAt, base: pipes.components, refiner: refiner.pipeline,
                                                     runBase: { try self.run(request.task, on: pipes, options: $0) { progress(i, $0) } },
                                                     progress: { progress(i, $0) })
                } else {
                    result = try run(request.task, on: pipes, options: options) { progress(i, $0) }
                }
            } catch PipelineError.cancelled {
                output.interrupted = true
                return output
            }
            output.schedulerClass = result.schedulerName
            for image in try result.rgbImages() {
                let info = GenerationInfotext(prompt: request.prompt, negativePrompt: request.negativePrompt, steps: options.numInferenceSteps,
                                              sampler: result.schedulerName, guidanceScale: options.guidanceScale, seed: result.seed,
                                              width: image.width, height: image.height, model: name,
                                              pipeline: request.task.pipelineName,
                                              extra: request.extraInfo + refinerInfo(request) + controlNetInfo(request))
                output.images.append(GeneratedImage(png: try info.png(image), seed: result.seed, infotext: info.text,
                                                    width: image.width, height: image.height))
            }
            if result.stoppedAfterStep != nil {
                output.interrupted = true
                return output
            }
        }
        return output
    }

    /// AUTOMATIC1111's infotext fields for a refined picture (the CLI's `--refiner` writes the same).
    private func refinerInfo(_ request: GenerationRequest) -> [(String, String)] {
        let vae = vaeName.map { [("VAE", $0)] } ?? []
        guard let switchAt = request.refinerSwitch, let refiner else { return vae }
        return vae + [("Refiner", refiner.name), ("Refiner switch at", String(switchAt))]
    }

    /// The prompt without its `<lora:NAME:SCALE>` tags and the LoRAs they name (in `--lora-dir`). Problems
    /// are the client's (422 on `prompt`), and their messages never show where the server keeps files.
    private func promptLoRAs(_ prompt: String) throws -> (String, [LoRA]) {
        guard prompt.contains("<lora:") else { return (prompt, []) }
        func hidePaths(_ message: String) -> String {
            guard let dir = loraDirectory?.path else { return message }
            return message.replacingOccurrences(of: dir, with: "<lora-dir>")
        }
        do {
            return try LoRAPromptTags.extract(from: prompt, directory: loraDirectory)
        } catch PipelineError.badModel(_, let detail) {
            throw APIError.invalid("prompt", hidePaths(detail))
        } catch PipelineError.invalidArgument(let message) {
            throw APIError.invalid("prompt", hidePaths(message).replacingOccurrences(of: "(--lora-dir)", with: "(the server runs without --lora-dir)"))
        }
    }

    private func run(_ task: GenerationRequest.Task, on pipes: Pipelines, options: GenerationOptions,
                     progress: @escaping ProgressHandler) throws -> GenerationResult {
        func missing(_ what: String) -> Error { PipelineError.invalidArgument("model \(name) (\(kind.rawValue)) cannot run \(what)") }
        switch task {
        case .txt2img:
            guard let p = pipes.txt2img else { throw missing("txt2img") }
            return try p(options, progress: progress)
        case .img2img(let image, let strength):
            guard let p = pipes.img2img else { throw missing("img2img") }
            return try p(options, image: image, strength: strength, progress: progress)
        case .inpaint(let image, let mask, let strength, let pad):
            guard let p = pipes.inpaint else { throw missing("inpainting") }
            return try p(options, image: image, mask: mask, strength: strength, paddingMaskCrop: pad, progress: progress)
        case .depth2img(let image, let strength, let depth):
            guard let p = pipes.depth else { throw missing("depth2img") }
            return try p(options, image: image, depthMap: depth, strength: strength, progress: progress)
        case .upscale(let image, let noise):
            guard let p = pipes.upscale else { throw missing("upscaling") }
            return try p(options, image: image, noiseLevel: noise, progress: progress)
        }
    }
}
