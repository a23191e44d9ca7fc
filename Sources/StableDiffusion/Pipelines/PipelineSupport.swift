import Foundation
import DiffusionTensor

/// Steps every pipeline shares around the denoising loop.
enum PipelineSupport {
    /// The model's scheduler, or the class named by `options.scheduler` with the model's config; the ones
    /// whose step takes `eta` (DDIM, TCD) get it.
    static func makeScheduler(_ c: StableDiffusionComponents, _ options: GenerationOptions) throws -> any Scheduler {
        var config = c.schedulerConfig
        if let spacing = options.timestepSpacing { config.values["timestep_spacing"] = .string(spacing) }
        // Read by LCM and TCD only, as diffusers' set_timesteps argument; the other schedulers have no such key.
        if let original = options.originalInferenceSteps { config.values["original_inference_steps"] = .int(original) }
        var s = try options.scheduler.map { try Schedulers.make(cliName: $0, config: config) }
            ?? Schedulers.make(config: config)
        s.setEta(options.eta)
        return s
    }

    /// The denoising loop for `options`: guidance as it asks, and its interruption.
    static func loop(_ c: StableDiffusionComponents, _ options: GenerationOptions, classifierFreeGuidance: Bool? = nil,
                     control: ControlNetGuidance? = nil) -> DenoisingLoop {
        DenoisingLoop(unet: c.unet, guidanceScale: options.guidanceScale,
                      classifierFreeGuidance: classifierFreeGuidance ?? options.classifierFreeGuidance, interruption: options.interruption,
                      control: control)
    }

    /// Decodes the loop's latents into the call's result (also after an interruption: the denoised estimate).
    static func result(_ out: DenoisingLoop.Output, vae: any LatentAutoencoder, seed: UInt64, scheduler: any Scheduler, start: Date,
                       tiledAbovePixels: Int = TiledDecoding.defaultThresholdPixels,
                       outputType: GenerationOptions.OutputType = .images) throws -> GenerationResult {
        let images = outputType == .latents ? Tensor(zeros: [out.latents.shape[0], 0, 0, 3])
            : try decode(out.latents, vae: vae, tiledAbovePixels: tiledAbovePixels)
        return GenerationResult(images: images, latents: out.latents, seed: seed, schedulerName: scheduler.kind.className,
                                denoisingSeconds: Date().timeIntervalSince(start), stoppedAfterStep: out.stoppedAfterStep)
    }

    /// diffusers' `denoising_end`: the timesteps at or above `round((1 - end) x num_train_timesteps)`.
    static func endingAt(_ end: Double?, _ timesteps: [Double], scheduler: any Scheduler) throws -> [Double] {
        guard let end else { return timesteps }
        let cutoff = try timestepCutoff(fraction: end, scheduler: scheduler)
        let kept = timesteps.filter { $0 >= cutoff }
        guard !kept.isEmpty else {
            throw PipelineError.invalidArgument("denoising end \(end) leaves no denoising step of \(timesteps.count) (raise it or the steps)")
        }
        return kept
    }

    /// `int(round(num_train_timesteps - fraction * num_train_timesteps))`, Python's rounding (half to even).
    static func timestepCutoff(fraction: Double, scheduler: any Scheduler) throws -> Double {
        let train = Double(try scheduler.config.int("num_train_timesteps", 1000))
        return (train - fraction * train).rounded(.toNearestOrEven)
    }

    /// `vae.decode(latents / scaling_factor)`, then diffusers' postprocess to [0, 1].
    static func decode(_ latents: Tensor, vae: any LatentAutoencoder, tiledAbovePixels: Int = TiledDecoding.defaultThresholdPixels) throws -> Tensor {
        let scaled = latents * (1 / vae.config.scalingFactor)
        TensorStorage.releaseCachedBuffers()
        let pixels = latents.shape[1] * latents.shape[2] * vae.config.scaleFactor * vae.config.scaleFactor
        var image = pixels > tiledAbovePixels ? try vae.decodeTiled(scaled) : try vae.decode(scaled)
        // The decode's buffers would otherwise stay kept (up to its peak) while a server waits for work.
        TensorStorage.releaseCachedBuffers()
        image.withUnsafeMutableBufferPointer { p in
            for i in 0..<p.count { p[i] = min(max(p[i] / 2 + 0.5, 0), 1) }
        }
        return image
    }
}

extension GenerationResult {
    /// This result with its images: `vae` decodes its latents exactly as the pipelines do (`PipelineSupport.decode`:
    /// the scaling factor, tiling above the same size, diffusers' postprocess). With `OutputType.latents` a
    /// caller can first let the UNet and text encoders go, so that the decode's activations never sit beside
    /// their weights (`sd txt2img` and `img2img` do).
    public func decodingLatents(with vae: any LatentAutoencoder) throws -> GenerationResult {
        let start = Date()
        let images = try PipelineSupport.decode(latents, vae: vae)
        return GenerationResult(images: images, latents: latents, seed: seed, schedulerName: schedulerName,
                                denoisingSeconds: denoisingSeconds + Date().timeIntervalSince(start), stoppedAfterStep: stoppedAfterStep)
    }
}
