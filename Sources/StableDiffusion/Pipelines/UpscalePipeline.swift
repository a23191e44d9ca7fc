import Foundation
import DiffusionTensor

/// diffusers' `StableDiffusionUpscalePipeline` (the x4 upscaler): the low-resolution image, noised by the
/// `low_res_scheduler` at `noiseLevel`, is concatenated with the latents at every step and the noise level
/// is the UNet's class label; latents have the low-resolution size and the VAE (scale factor 4) upsamples.
public final class StableDiffusionUpscalePipeline: @unchecked Sendable {
    public let components: StableDiffusionComponents
    /// Noise levels above this are rejected (`max_noise_level` in model_index.json, 350 by default).
    public let maxNoiseLevel: Int
    /// Decode in overlapping tiles when the output has more pixels than this (see `TiledDecoding`).
    public var tiledDecodeThresholdPixels = TiledDecoding.defaultThresholdPixels

    public init(components: StableDiffusionComponents) throws {
        guard components.family == .stableDiffusion else {
            throw PipelineError.badModel(path: components.directory.path, detail: "x4 upscaling is not supported for SDXL models yet")
        }
        let c = components
        guard c.lowResSchedulerConfig != nil else {
            throw PipelineError.badModel(path: c.directory.path, detail: "the upscaler needs a low_res_scheduler component")
        }
        guard c.unet.config.inChannels == c.vae.config.latentChannels + 3 else {
            throw PipelineError.badModel(path: c.directory.path,
                                         detail: "the upscaler's UNet must take latents + RGB (\(c.vae.config.latentChannels + 3) channels), this one takes \(c.unet.config.inChannels)")
        }
        guard c.unet.config.classEmbedding != nil else {
            throw PipelineError.badModel(path: c.directory.path, detail: "the upscaler's UNet needs class embeddings for the noise level")
        }
        if let v = c.index.settings["max_noise_level"] {
            guard let m = v.intValue else {
                throw PipelineError.badModel(path: c.directory.appendingPathComponent("model_index.json").path, detail: "max_noise_level is not an integer")
            }
            maxNoiseLevel = m
        } else {
            maxNoiseLevel = 350
        }
        self.components = c
    }

    public convenience init(modelDirectory: URL, variant: String? = nil, adapters: ModelAdapters = ModelAdapters(),
                            precision: ComputePrecision = .fp32) throws {
        try self.init(components: StableDiffusionComponents(directory: modelDirectory, variant: variant, includeVAEEncoder: false, adapters: adapters,
                                                            precision: precision))
    }

    /// diffusers' defaults for this pipeline: 75 steps, guidance 9, noise level 20.
    public static let defaultSteps = 75
    public static let defaultGuidanceScale: Float = 9
    public static let defaultNoiseLevel = 20

    /// - Parameters:
    ///   - image: the low-resolution input, NHWC `[1 or prompts, h, w, 3]` in [-1, 1].
    ///   - noiseLevel: how much noise is added to the input (0...maxNoiseLevel).
    public func callAsFunction(_ options: GenerationOptions, image: Tensor, noiseLevel: Int = defaultNoiseLevel,
                               progress: ProgressHandler? = nil) throws -> GenerationResult {
        let c = components
        try options.validate(vaeScaleFactor: c.vaeScaleFactor)
        try options.refuseControlNets("x4 upscaling")
        guard noiseLevel >= 0, noiseLevel <= maxNoiseLevel else {
            throw PipelineError.invalidArgument("noise level must be in [0, \(maxNoiseLevel)] (max_noise_level), got \(noiseLevel)")
        }
        guard image.rank == 4, image.shape[3] == 3, image.shape[1] > 0, image.shape[2] > 0 else {
            throw PipelineError.invalidArgument("image must be NHWC RGB, got \(image.shape)")
        }
        guard image.shape[0] == 1 || image.shape[0] == options.prompts.count else {
            throw PipelineError.invalidArgument("\(image.shape[0]) images for \(options.prompts.count) prompts")
        }
        let cfg = options.classifierFreeGuidance
        var scheduler = try PipelineSupport.makeScheduler(c, options)
        guard let lowResConfig = c.lowResSchedulerConfig else { throw PipelineError.badModel(path: c.directory.path, detail: "no low_res_scheduler") }
        let lowRes = try Schedulers.make(config: lowResConfig)
        let embeddings = try c.encodePrompt(options)
        try scheduler.setTimesteps(options.numInferenceSteps)
        var (generators, seed) = try options.makeGenerator()

        // Draw order as diffusers: the image noise first, then the latents.
        let imageNoise = try generators.randnLike(image)
        let noised = try lowRes.addNoise(originalSamples: image, noise: imageNoise, timesteps: [Double(noiseLevel)])
        // diffusers tiles the whole image batch (`cat([image] * multiplier * images_per_prompt)`).
        let copies = (cfg ? 2 : 1) * options.numImagesPerPrompt
        let lowResChannels = try Tensor.concatenate([Tensor](repeating: noised, count: copies), axis: 0)
        let (h, w) = (image.shape[1], image.shape[2])
        let latentsShape = [options.batchSize, h, w, c.vae.config.latentChannels]
        var latents: Tensor
        if let given = options.latents {
            guard given.shape == latentsShape else { throw PipelineError.invalidArgument("latents must have shape \(latentsShape), got \(given.shape)") }
            latents = given
        } else {
            latents = try generators.randnNHWC(batch: latentsShape[0], channels: latentsShape[3], height: h, width: w)
        }
        latents = latents * scheduler.initNoiseSigma
        let start = Date()
        var generator: RandomGenerators? = generators
        let out = try PipelineSupport.loop(c, options, classifierFreeGuidance: cfg)
            .run(latents: latents, timesteps: scheduler.timesteps, scheduler: &scheduler,
                 conditioning: UNetConditioning(encoderHiddenStates: embeddings, classLabels: [Float(noiseLevel)]),
                 generator: &generator, extraChannels: lowResChannels, progress: progress)
        return try PipelineSupport.result(out, vae: c.vae, seed: seed, scheduler: scheduler, start: start, tiledAbovePixels: tiledDecodeThresholdPixels)
    }

    /// From an 8-bit image: diffusers' processor for this pipeline (bicubic, sides rounded down to a
    /// multiple of 4).
    public func callAsFunction(_ options: GenerationOptions, image: Image, noiseLevel: Int = defaultNoiseLevel,
                               progress: ProgressHandler? = nil) throws -> GenerationResult {
        let processor = try VaeImageProcessor(vaeScaleFactor: components.vaeScaleFactor, resample: .bicubic)
        let tensor = try processor.preprocess(image.toRGB())
        return try self(options, image: tensor, noiseLevel: noiseLevel, progress: progress)
    }
}
