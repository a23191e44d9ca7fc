import Foundation
import DiffusionTensor

/// diffusers' "ensemble of expert denoisers" (SDXL base + refiner; AUTOMATIC1111's refiner): the base
/// denoises until `switchAt` of the schedule (`denoising_end`, latents only) and the refiner finishes from
/// those latents (`denoising_start`) with the same prompts, steps and seed. The one place the rule lives:
/// the CLI (which loads the refiner only after letting go of the base) and the server both use it.
public enum RefinerEnsemble {
    /// The fraction must leave both models at least part of the schedule.
    public static func validate(switchAt: Double) throws {
        guard switchAt > 0, switchAt < 1 else {
            throw PipelineError.invalidArgument("refiner switch must be in (0, 1), got \(switchAt)")
        }
    }

    /// The base half's options: stop at `switchAt`, no decode.
    public static func baseOptions(_ options: GenerationOptions, switchAt: Double) -> GenerationOptions {
        var o = options
        o.denoisingEnd = switchAt
        o.outputType = .latents
        return o
    }

    /// The refiner half's options, from the options the base ran with and its result.
    public static func refinerOptions(_ baseOptions: GenerationOptions, switchAt: Double, base: GenerationResult) -> GenerationOptions {
        var o = baseOptions
        o.denoisingEnd = nil
        o.outputType = .images
        o.denoisingStart = switchAt
        o.seed = base.seed
        // ControlNets steer the base model only (they are trained for its UNet, as in AUTOMATIC1111).
        o.controlNets = []
        o.guessMode = false
        return o
    }

    /// Both halves with loaded models. A base interrupted before the switch is decoded by the base's VAE
    /// (the picture being drawn, as an interrupted single model gives); the refiner is then not run.
    /// - Parameter base: runs the base pipeline on the options it is given.
    public static func run(_ options: GenerationOptions, switchAt: Double, base baseComponents: StableDiffusionComponents,
                           refiner: StableDiffusionImg2ImgPipeline, runBase: (GenerationOptions) throws -> GenerationResult,
                           progress: ProgressHandler? = nil) throws -> GenerationResult {
        try validate(switchAt: switchAt)
        guard baseComponents.family == .stableDiffusionXL, refiner.components.family == .stableDiffusionXL else {
            throw PipelineError.invalidArgument("a refiner needs an SDXL base and an SDXL refiner (their latents are SDXL's)")
        }
        let first = baseOptions(options, switchAt: switchAt)
        let handOver = try runBase(first)
        if handOver.stoppedAfterStep != nil { return try baseComponents.decoding(handOver) }
        return try refiner(refinerOptions(first, switchAt: switchAt, base: handOver), image: handOver.latents, progress: progress)
    }
}

extension StableDiffusionComponents {
    /// `result` with its latents decoded by this model's VAE (for a latents-only result).
    public func decoding(_ result: GenerationResult) throws -> GenerationResult {
        var decoded = GenerationResult(images: try PipelineSupport.decode(result.latents, vae: vae), latents: result.latents, seed: result.seed,
                                       schedulerName: result.schedulerName, denoisingSeconds: result.denoisingSeconds)
        decoded.stoppedAfterStep = result.stoppedAfterStep
        return decoded
    }
}
