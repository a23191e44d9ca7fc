import ArgumentParser
import Foundation
import StableDiffusion

/// `--refiner MODEL --refiner-switch F`: diffusers' "ensemble of expert denoisers" (AUTOMATIC1111's refiner).
/// The base model denoises until `F` of the schedule (`denoising_end`) and hands its latents, undecoded, to
/// the refiner, which finishes from there (`denoising_start`) with the same prompts, steps and seed.
struct RefinerArguments: ParsableArguments {
    @Option(help: "SDXL: a refiner (or any SDXL model: folder, single file or Hub repo id) that finishes the last part of the denoising.")
    var refiner: String?

    @Option(help: "With --refiner: the fraction of the schedule the base model denoises before the refiner takes over, in (0, 1).")
    var refinerSwitch: Double = 0.8

    func validate() throws {
        guard refinerSwitch > 0, refinerSwitch < 1 else { throw ValidationError("--refiner-switch must be in (0, 1), got \(refinerSwitch)") }
        if let refiner, (try? ModelLocation.classify(refiner)) == nil {
            throw ValidationError("--refiner: \(refiner) is not a folder, a single-file checkpoint or a Hub repo id (owner/name[@revision])")
        }
    }

    /// Runs `base` (which loads the base model, completes the options with its family's defaults, runs it and
    /// lets go of it, returning its VAE) with the refiner after it, or alone. The base model is released
    /// before the refiner loads, so the two are never in memory together; and the last model runs to latents
    /// and is released too, all but its VAE, before that decodes them (SDXL at 1024x1024: the decode's
    /// gigabytes of activations never sit beside the UNet's and text encoders' weights). The picture is the
    /// pipeline's own (`GenerationResult.decodingLatents`). Returns the result and the options the base ran with.
    func run(_ options: GenerationOptions, args: GenerationArguments,
             base: (GenerationOptions) throws -> (GenerationResult, ModelFamily, GenerationOptions, any LatentAutoencoder))
        throws -> (GenerationResult, GenerationOptions) {
        guard let refiner else {
            var latentsOnly = options
            latentsOnly.outputType = .latents
            var (result, _, used, vae) = try base(latentsOnly)
            used.outputType = options.outputType
            if options.outputType == .images { result = try result.decodingLatents(with: vae) }
            return (result, used)
        }
        let (handOver, family, used, _) = try base(RefinerEnsemble.baseOptions(options, switchAt: refinerSwitch))
        guard family == .stableDiffusionXL else {
            throw PipelineError.invalidArgument("--refiner needs an SDXL base model; --model \(args.model) is an SD 1.x/2.x model")
        }
        let location = try ModelLocation.classify(refiner)
        let components = try StableDiffusionComponents(
            location: location, includeVAEEncoder: false, hubProgress: DownloadProgressBar.forStderr()?.update, precision: args.precision)
        guard components.family == .stableDiffusionXL else {
            throw PipelineError.invalidArgument("--refiner \(refiner) is an SD 1.x/2.x model; it must be an SDXL model (its latents are SDXL's)")
        }
        args.reportLoad(components)
        let second = RefinerEnsemble.refinerOptions(used, switchAt: refinerSwitch, base: handOver)
        let vae = components.vae
        let latents = try refine(consume components, second, handOver)
        return (second.outputType == .images ? try latents.decodingLatents(with: vae) : latents, second)
    }

    /// The refiner's latents; its networks go when this returns (the caller keeps only the VAE).
    private func refine(_ components: consuming StableDiffusionComponents, _ options: GenerationOptions,
                        _ handOver: GenerationResult) throws -> GenerationResult {
        var latentsOnly = options
        latentsOnly.outputType = .latents
        return try StableDiffusionImg2ImgPipeline(components: components)(latentsOnly, image: handOver.latents, progress: ProgressBar().update)
    }

    /// AUTOMATIC1111's infotext fields for a refined picture.
    var infotext: [(String, String)] {
        guard let refiner else { return [] }
        return [("Refiner", URL(fileURLWithPath: refiner).lastPathComponent), ("Refiner switch at", String(refinerSwitch))]
    }
}
