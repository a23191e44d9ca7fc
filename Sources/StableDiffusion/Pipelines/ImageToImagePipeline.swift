import Foundation
import DiffusionTensor

/// diffusers' `StableDiffusionImg2ImgPipeline` and `StableDiffusionXLImg2ImgPipeline` (base models and the refiner):
/// start from a noised encoding of an image.
public final class StableDiffusionImg2ImgPipeline: @unchecked Sendable {
    public let components: StableDiffusionComponents

    public init(components: StableDiffusionComponents) throws {
        guard components.unet.config.inChannels == 4 else {
            throw PipelineError.badModel(path: components.directory.path,
                                         detail: "image-to-image needs a 4-channel UNet; this one has \(components.unet.config.inChannels) input channels")
        }
        self.components = components
    }

    public convenience init(modelDirectory: URL, variant: String? = nil, adapters: ModelAdapters = ModelAdapters(),
                            precision: ComputePrecision = .fp32) throws {
        try self.init(components: StableDiffusionComponents(directory: modelDirectory, variant: variant, adapters: adapters,
                                                            precision: precision))
    }

    /// - Parameters:
    ///   - image: the preprocessed input, NHWC `[1 or n, height, width, 3]` in [-1, 1], with height and
    ///     width multiples of the VAE scale factor (see `ImageProcessor`); or latents `[1 or n, h, w, 4]`
    ///     (a base model's `OutputType.latents` result), used as they are, as diffusers does.
    ///   - strength: how much to transform the image, in [0, 1]; nil: diffusers' default, 0.8 (0.3 for SDXL).
    ///     Ignored with `options.denoisingStart`, which starts at that point of the schedule without adding noise.
    public func callAsFunction(_ options: GenerationOptions, image: Tensor, strength: Double? = nil,
                               progress: ProgressHandler? = nil) throws -> GenerationResult {
        let c = components
        let strength = strength ?? (c.family == .stableDiffusionXL ? 0.3 : 0.8)
        try options.validate(vaeScaleFactor: c.vaeScaleFactor)
        let options = c.resolvingGuidance(options)
        guard strength >= 0, strength <= 1 else { throw PipelineError.invalidArgument("strength must be in [0, 1], got \(strength)") }
        let isLatents = image.rank == 4 && image.shape[3] == c.vae.config.latentChannels
        guard image.rank == 4, isLatents || (image.shape[3] == 3 && image.shape[1] % c.vaeScaleFactor == 0 && image.shape[2] % c.vaeScaleFactor == 0) else {
            throw PipelineError.invalidArgument("image must be NHWC RGB with sides that are multiples of \(c.vaeScaleFactor), or \(c.vae.config.latentChannels)-channel latents, got \(image.shape)")
        }
        guard isLatents || c.vae.hasEncoder else {
            throw PipelineError.badModel(path: c.directory.path, detail: "image-to-image from pixels needs the VAE encoder (load with includeVAEEncoder)")
        }
        let pixelScale = isLatents ? c.vaeScaleFactor : 1
        var scheduler = try PipelineSupport.makeScheduler(c, options)
        let conditioning = try c.unetConditioning(options, height: image.shape[1] * pixelScale, width: image.shape[2] * pixelScale)
        try scheduler.setTimesteps(options.numInferenceSteps)
        var timesteps: [Double]
        if c.isLatentConsistencyModel, options.denoisingStart == nil, var lcm = scheduler as? LCMScheduler {
            // LatentConsistencyModelImg2ImgPipeline (what diffusers' AutoPipeline picks for an LCM folder): the
            // strength shortens the distillation schedule and every step runs.
            try lcm.setTimesteps(options.numInferenceSteps, strength: strength)
            timesteps = lcm.timesteps
            scheduler = lcm
        } else {
            timesteps = try options.denoisingStart.map { try LatentPreparation.timesteps(startingAt: $0, &scheduler) }
                ?? LatentPreparation.truncatedTimesteps(&scheduler, steps: options.numInferenceSteps, strength: strength)
        }
        timesteps = try PipelineSupport.endingAt(options.denoisingEnd, timesteps, scheduler: scheduler)
        var (generators, seed) = try options.makeGenerator()
        var latents = isLatents ? try LatentPreparation.repeatBatch(image, to: options.batchSize)
            : try LatentPreparation.encodeImages(image, vae: c.vae, batchSize: options.batchSize, generator: &generators)
        if options.denoisingStart == nil {
            let noise = try generators.randnLike(latents)
            latents = try scheduler.addNoise(originalSamples: latents, noise: noise, timesteps: [timesteps[0]])
        }
        let start = Date()
        var generator: RandomGenerators? = generators
        let control = try ControlNetGuidance.make(options, c, task: .imageToImage, height: latents.shape[1] * c.vaeScaleFactor, width: latents.shape[2] * c.vaeScaleFactor)
        let out = try PipelineSupport.loop(c, options, control: control)
            .run(latents: latents, timesteps: timesteps, scheduler: &scheduler, conditioning: conditioning,
                 generator: &generator, progress: progress)
        return try PipelineSupport.result(out, vae: c.vae, seed: seed, scheduler: scheduler, start: start, outputType: options.outputType)
    }
}

/// diffusers' `StableDiffusionXLImg2ImgPipeline` (base models and the refiner) is this pipeline with SDXL components.
public typealias StableDiffusionXLImg2ImgPipeline = StableDiffusionImg2ImgPipeline
