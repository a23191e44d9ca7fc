import Foundation
import DiffusionTensor

/// diffusers' `StableDiffusionInpaintPipeline` and `StableDiffusionXLInpaintPipeline`, for 9-channel
/// inpainting UNets (latents + mask + masked-image latents) and for ordinary 4-channel UNets (known regions
/// re-noised and blended back after every step). With SDXL components the UNet gets SDXL's conditioning
/// and `denoisingStart`/`denoisingEnd` work as in image-to-image.
public final class StableDiffusionInpaintPipeline: @unchecked Sendable {
    public let components: StableDiffusionComponents

    public init(components: StableDiffusionComponents) throws {
        let ch = components.unet.config.inChannels
        guard ch == 4 || ch == 9 else {
            throw PipelineError.badModel(path: components.directory.path, detail: "inpainting needs a UNet with 4 or 9 input channels, this one has \(ch)")
        }
        guard components.vae.hasEncoder else {
            throw PipelineError.badModel(path: components.directory.path, detail: "inpainting needs the VAE encoder")
        }
        self.components = components
    }

    public convenience init(modelDirectory: URL, variant: String? = nil, adapters: ModelAdapters = ModelAdapters(),
                            precision: ComputePrecision = .fp32) throws {
        try self.init(components: StableDiffusionComponents(directory: modelDirectory, variant: variant, adapters: adapters,
                                                            precision: precision))
    }

    /// The default output size: the UNet's sample size times the VAE scale factor (as diffusers).
    public var defaultSize: (height: Int, width: Int) {
        (components.defaultImageSide, components.defaultImageSide)
    }

    /// Runs on already processed inputs (see `ImageProcessor` / `MaskProcessor`):
    /// - Parameters:
    ///   - image: NHWC `[1 or n, height, width, 3]` in [-1, 1] at the working size.
    ///   - mask: NHWC `[1 or n, height, width, 1]`, binarised (1 = repaint).
    ///   - strength: 1 starts from pure noise; less starts from the noised image. nil: diffusers' default,
    ///     1 (0.9999 for SDXL, which skips the first step of the schedule as diffusers does).
    public func callAsFunction(_ options: GenerationOptions, image: Tensor, mask: Tensor, strength: Double? = nil,
                               progress: ProgressHandler? = nil) throws -> GenerationResult {
        let c = components
        let strength = strength ?? Self.defaultStrength(c.family)
        try options.validate(vaeScaleFactor: c.vaeScaleFactor)
        let options = c.resolvingGuidance(options)
        guard strength >= 0, strength <= 1 else { throw PipelineError.invalidArgument("strength must be in [0, 1], got \(strength)") }
        guard image.rank == 4, image.shape[3] == 3 else { throw PipelineError.invalidArgument("image must be NHWC RGB, got \(image.shape)") }
        let (height, width) = (image.shape[1], image.shape[2])
        guard height % c.vaeScaleFactor == 0, width % c.vaeScaleFactor == 0 else {
            throw PipelineError.invalidArgument("image sides must be multiples of \(c.vaeScaleFactor), got \(height)x\(width)")
        }
        guard mask.rank == 4, mask.shape[1] == height, mask.shape[2] == width, mask.shape[3] == 1 else {
            throw PipelineError.invalidArgument("mask must be NHWC [n, \(height), \(width), 1], got \(mask.shape)")
        }
        let batch = options.batchSize
        let cfg = options.classifierFreeGuidance
        var scheduler = try PipelineSupport.makeScheduler(c, options)
        let conditioning = try c.unetConditioning(options, height: height, width: width)
        try scheduler.setTimesteps(options.numInferenceSteps)
        var timesteps = try options.denoisingStart.map { try LatentPreparation.timesteps(startingAt: $0, &scheduler) }
            ?? LatentPreparation.truncatedTimesteps(&scheduler, steps: options.numInferenceSteps, strength: strength)
        timesteps = try PipelineSupport.endingAt(options.denoisingEnd, timesteps, scheduler: scheduler)
        var (generators, seed) = try options.makeGenerator()
        let fullStrength = strength == 1.0
        let unetChannels = c.unet.config.inChannels
        let latentShape = [batch, height / c.vaeScaleFactor, width / c.vaeScaleFactor, c.vae.config.latentChannels]

        // Random draws in diffusers' order: image latents (when needed), noise, masked-image latents.
        var imageLatents: Tensor?
        if unetChannels == 4 || !fullStrength {
            imageLatents = try LatentPreparation.encodeImages(image, vae: c.vae, batchSize: batch, generator: &generators,
                                                              repeatBeforeEncoding: false)
        }
        let noise: Tensor
        if let given = options.latents {
            guard given.shape == latentShape else { throw PipelineError.invalidArgument("latents must have shape \(latentShape), got \(given.shape)") }
            noise = given
        } else {
            noise = try generators.randnNHWC(batch: batch, channels: latentShape[3], height: latentShape[1], width: latentShape[2])
        }
        var latents: Tensor
        if options.denoisingStart != nil, options.latents == nil {
            // diffusers' add_noise=False: the (already noised) image latents as they are; the noise is still drawn.
            guard let imageLatents else { throw PipelineError.invalidArgument("image latents missing") }
            latents = imageLatents
        } else if fullStrength || options.latents != nil {
            latents = noise * scheduler.initNoiseSigma
        } else {
            guard let imageLatents else { throw PipelineError.invalidArgument("image latents missing") }
            latents = try scheduler.addNoise(originalSamples: imageLatents, noise: noise, timesteps: [timesteps[0]])
        }
        // masked_image = image * (mask < 0.5)
        let keep = mask
        var maskedImage = image
        try maskedImage.withUnsafeMutableBufferPointer { p in
            let pixels = height * width
            let masks = keep.shape[0], images = image.shape[0]
            guard masks == images || masks == 1 else { throw PipelineError.invalidArgument("\(masks) masks for \(images) images") }
            keep.withUnsafeBufferPointer { m in
                for b in 0..<images { for q in 0..<pixels where m[(masks == 1 ? 0 : b) * pixels + q] >= 0.5 {
                    for ch in 0..<3 { p[(b * pixels + q) * 3 + ch] = 0 }
                } }
            }
        }
        let latentMask = try LatentPreparation.repeatBatch(
            try mask.resized(height: latentShape[1], width: latentShape[2], mode: .nearest), to: batch)
        let maskedLatents = try LatentPreparation.encodeImages(maskedImage, vae: c.vae, batchSize: batch, generator: &generators,
                                                               repeatBeforeEncoding: false)
        var extra: Tensor? = nil
        if unetChannels == 9 {
            let perStep = try Tensor.concatenate([latentMask, maskedLatents], axis: 3)
            extra = cfg ? try Tensor.concatenate([perStep, perStep], axis: 0) : perStep
        }
        // 4-channel UNets: after each step, put back the known region, noised to the next timestep.
        var blend: ((Int, Tensor, any Scheduler) throws -> Tensor)? = nil
        if unetChannels == 4, let imageLatents {
            blend = { i, current, sched in
                var known = imageLatents
                if i < timesteps.count - 1 {
                    known = try sched.addNoise(originalSamples: imageLatents, noise: noise, timesteps: [timesteps[i + 1]])
                }
                return try Self.blend(known: known, generated: current, mask: latentMask)
            }
        }
        let start = Date()
        var generator: RandomGenerators? = generators
        let control = try ControlNetGuidance.make(options, c, task: .inpainting, height: height, width: width)
        let out = try PipelineSupport.loop(c, options, classifierFreeGuidance: cfg, control: control)
            .run(latents: latents, timesteps: timesteps, scheduler: &scheduler, conditioning: conditioning, generator: &generator,
                 extraChannels: extra, progress: progress, afterStep: blend)
        return try PipelineSupport.result(out, vae: c.vae, seed: seed, scheduler: scheduler, start: start, outputType: options.outputType)
    }

    /// diffusers' default strength: 1 for SD, 0.9999 for SDXL's inpainting pipeline.
    public static func defaultStrength(_ family: ModelFamily) -> Double { family == .stableDiffusionXL ? 0.9999 : 1.0 }

    /// `(1 - mask) * known + mask * generated`, the mask broadcast over channels.
    static func blend(known: Tensor, generated: Tensor, mask: Tensor) throws -> Tensor {
        guard known.shape == generated.shape, mask.shape[0] == known.shape[0] else {
            throw TensorError.shapeMismatch("inpaint blend: \(known.shape), \(generated.shape), mask \(mask.shape)")
        }
        var out = generated
        let ch = known.shape[3]
        out.withUnsafeMutableBufferPointer { o in
            known.withUnsafeBufferPointer { k in
                mask.withUnsafeBufferPointer { m in
                    for p in 0..<m.count {
                        let w = m[p]
                        for c in 0..<ch { o[p * ch + c] = (1 - w) * k[p * ch + c] + w * o[p * ch + c] }
                    }
                }
            }
        }
        return out
    }
}

/// diffusers' `StableDiffusionXLInpaintPipeline` is this pipeline with SDXL components.
public typealias StableDiffusionXLInpaintPipeline = StableDiffusionInpaintPipeline
