import DiffusionTensor

/// Turning images into starting latents, shared by image-to-image, inpainting and depth-to-image.
enum LatentPreparation {
    /// diffusers' `get_timesteps`: keep the last `int(steps * strength)` steps of the schedule.
    static func truncatedTimesteps(_ scheduler: inout any Scheduler, steps: Int, strength: Double) throws -> [Double] {
        let initTimestep = min(Int(Double(steps) * strength), steps)
        let tStart = max(steps - initTimestep, 0)
        let all = scheduler.timesteps
        let from = tStart * scheduler.order
        guard from < all.count else {
            throw PipelineError.invalidArgument("strength \(strength) with \(steps) steps leaves no denoising step (steps x strength must be >= 1)")
        }
        scheduler.setBeginIndex(from)
        return Array(all[from...])
    }

    /// Encodes images with the VAE, sampling the latent distribution with the generator(s) as diffusers
    /// does (one draw for the whole batch, or one per image with per-image generators), scales them,
    /// and repeats them to `batchSize`.
    static func encodeImages(_ images: Tensor, vae: AutoencoderKL, batchSize: Int, generator: inout RandomGenerators) throws -> Tensor {
        let n = images.shape[0]
        guard n > 0, batchSize % n == 0 else {
            throw PipelineError.invalidArgument("cannot repeat \(n) input images to a batch of \(batchSize)")
        }
        var latents: Tensor
        if generator.isPerImage {
            // Each image is encoded on its own with its own generator.
            let repeated = try Tensor.concatenate([Tensor](repeating: images, count: batchSize / n), axis: 0)
            var parts: [Tensor] = []
            for i in 0..<batchSize {
                let dist = try vae.encode(try repeated.slice(axis: 0, i..<(i + 1)))
                let m = dist.mean.shape
                let noise = try generator.randnNHWC(generatorIndex: i, batch: 1, channels: m[3], height: m[1], width: m[2])
                parts.append(try dist.sample(noise: noise))
            }
            latents = try Tensor.concatenate(parts, axis: 0)
        } else {
            let dist = try vae.encode(images)
            let m = dist.mean.shape
            let noise = try generator.randnNHWC(batch: m[0], channels: m[3], height: m[1], width: m[2])
            latents = try dist.sample(noise: noise)
        }
        latents = latents * vae.config.scalingFactor
        if latents.shape[0] < batchSize {
            latents = try Tensor.concatenate([Tensor](repeating: latents, count: batchSize / latents.shape[0]), axis: 0)
        }
        return latents
    }
}
