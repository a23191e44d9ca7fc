import Foundation
import DiffusionTensor

/// diffusers' `StableDiffusionPipeline` and `StableDiffusionXLPipeline`: text to image. The components'
/// family decides the conditioning (see `StableDiffusionComponents.unetConditioning`); the steps are the same.
public final class StableDiffusionPipeline: @unchecked Sendable {
    public let components: StableDiffusionComponents

    public init(components: StableDiffusionComponents) throws {
        guard !components.requiresAestheticsScore else {
            throw PipelineError.badModel(path: components.directory.path,
                                         detail: "this SDXL refiner (requires_aesthetics_score) refines images: use image-to-image, or run it after a base model (--refiner)")
        }
        guard components.unet.config.inChannels == 4 else {
            throw PipelineError.badModel(path: components.directory.path,
                                         detail: "text-to-image needs a 4-channel UNet; this one has \(components.unet.config.inChannels) input channels (use the matching pipeline)")
        }
        self.components = components
    }

    /// Loads a model folder and builds the pipeline.
    public convenience init(modelDirectory: URL, variant: String? = nil, adapters: ModelAdapters = ModelAdapters(),
                            precision: ComputePrecision = .fp32) throws {
        try self.init(components: StableDiffusionComponents(directory: modelDirectory, variant: variant, includeVAEEncoder: false, adapters: adapters,
                                                            precision: precision))
    }

    public func callAsFunction(_ options: GenerationOptions, progress: ProgressHandler? = nil) throws -> GenerationResult {
        let c = components
        try options.validate(vaeScaleFactor: c.vaeScaleFactor)
        let options = c.resolvingGuidance(options)
        guard options.denoisingStart == nil else {
            throw PipelineError.invalidArgument("denoising start applies to image-to-image (the refiner's part of an ensemble), not text-to-image")
        }
        // With ControlNets and no size, diffusers takes the first control image's size (rounded down to a
        // multiple of the VAE scale factor).
        let controlSize = try options.controlNets.first.map {
            try VaeImageProcessor(vaeScaleFactor: c.vaeScaleFactor).defaultHeightWidth(for: $0.image, height: options.height, width: options.width)
        }
        let height = options.height ?? controlSize?.height ?? c.defaultImageSide
        let width = options.width ?? controlSize?.width ?? c.defaultImageSide
        guard height > 0, width > 0 else {
            throw PipelineError.invalidArgument("the control image is smaller than \(c.vaeScaleFactor) pixels on a side")
        }
        var scheduler = try PipelineSupport.makeScheduler(c, options)
        let conditioning = try c.unetConditioning(options, height: height, width: width)
        try scheduler.setTimesteps(options.numInferenceSteps)
        var (generators, seed) = try options.makeGenerator()
        let latentShape = [options.batchSize, height / c.vaeScaleFactor, width / c.vaeScaleFactor, c.unet.config.outChannels]
        var latents: Tensor
        if let given = options.latents {
            guard given.shape == latentShape else {
                throw PipelineError.invalidArgument("latents must have shape \(latentShape) (NHWC), got \(given.shape)")
            }
            latents = given
        } else {
            latents = try generators.randnNHWC(batch: latentShape[0], channels: latentShape[3], height: latentShape[1], width: latentShape[2])
        }
        latents = latents * scheduler.initNoiseSigma
        let start = Date()
        var generator: RandomGenerators? = generators
        let timesteps = try PipelineSupport.endingAt(options.denoisingEnd, scheduler.timesteps, scheduler: scheduler)
        let control = try ControlNetGuidance.make(options, c, task: .textToImage, height: height, width: width)
        let out = try PipelineSupport.loop(c, options, control: control)
            .run(latents: latents, timesteps: timesteps, scheduler: &scheduler, conditioning: conditioning,
                 generator: &generator, progress: progress)
        return try PipelineSupport.result(out, vae: c.vae, seed: seed, scheduler: scheduler, start: start, outputType: options.outputType)
    }
}

/// diffusers' `StableDiffusionXLPipeline` is this pipeline with SDXL components.
public typealias StableDiffusionXLPipeline = StableDiffusionPipeline
