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

    /// diffusers' SDXL `get_timesteps` with `denoising_start`: the timesteps below
    /// `round((1 - start) x num_train_timesteps)` (one more for a second-order scheduler left mid-step).
    static func timesteps(startingAt start: Double, _ scheduler: inout any Scheduler) throws -> [Double] {
        let cutoff = try PipelineSupport.timestepCutoff(fraction: start, scheduler: scheduler)
        let all = scheduler.timesteps
        var count = all.filter { $0 < cutoff }.count
        if scheduler.order == 2, count % 2 == 0 { count += 1 }
        count = min(count, all.count)
        guard count > 0 else {
            throw PipelineError.invalidArgument("denoising start \(start) leaves no denoising step of \(all.count) (lower it or raise the steps)")
        }
        scheduler.setBeginIndex(all.count - count)
        return Array(all.suffix(count))
    }

    /// Encodes images with the VAE, sampling the latent distribution with the generator(s) as diffusers
    /// does, scales them, and repeats them to `batchSize`.
    ///
    /// With per-image generators, image-to-image first repeats the images to the batch and encodes each with
    /// its own generator (`repeatBeforeEncoding`), while inpainting encodes only the given images, image `i`
    /// with generator `i`; with one generator the whole input is encoded in one draw.
    static func encodeImages(_ images: Tensor, vae: any LatentAutoencoder, batchSize: Int, generator: inout RandomGenerators,
                             repeatBeforeEncoding: Bool = true) throws -> Tensor {
        let n = images.shape[0]
        guard n > 0, batchSize % n == 0 else {
            throw PipelineError.invalidArgument("cannot repeat \(n) input images to a batch of \(batchSize)")
        }
        var latents: Tensor
        if generator.isPerImage {
            let source = repeatBeforeEncoding ? try Tensor.concatenate([Tensor](repeating: images, count: batchSize / n), axis: 0) : images
            var parts: [Tensor] = []
            for i in 0..<source.shape[0] {
                switch try vae.encodeLatents(try source.slice(axis: 0, i..<(i + 1))) {
                case .distribution(let dist):
                    let m = dist.mean.shape
                    let noise = try generator.randnNHWC(generatorIndex: i, batch: 1, channels: m[3], height: m[1], width: m[2])
                    parts.append(try dist.sample(noise: noise))
                case .latents(let l): parts.append(l)  // AutoencoderTiny: no draw
                }
            }
            latents = try Tensor.concatenate(parts, axis: 0)
        } else {
            switch try vae.encodeLatents(images) {
            case .distribution(let dist):
                let m = dist.mean.shape
                let noise = try generator.randnNHWC(batch: m[0], channels: m[3], height: m[1], width: m[2])
                latents = try dist.sample(noise: noise)
            case .latents(let l): latents = l
            }
        }
        latents = latents * vae.config.scalingFactor
        return try repeatBatch(latents, to: batchSize)
    }

    /// The start of image-to-image style pipelines: the images' latents (`encodeImages`), noised to the
    /// first of `timesteps` with one more draw from the generator.
    static func noisedImageLatents(_ images: Tensor, vae: any LatentAutoencoder, scheduler: any Scheduler, timesteps: [Double],
                                   batchSize: Int, generator: inout RandomGenerators) throws -> Tensor {
        let initLatents = try encodeImages(images, vae: vae, batchSize: batchSize, generator: &generator)
        let noise = try generator.randnLike(initLatents)
        return try scheduler.addNoise(originalSamples: initLatents, noise: noise, timesteps: [timesteps[0]])
    }

    /// Repeats a batch `[n, ...]` to `[batchSize, ...]` (`tensor.repeat(batchSize / n, 1, 1, 1)`).
    static func repeatBatch(_ t: Tensor, to batchSize: Int) throws -> Tensor {
        let n = t.shape[0]
        if n == batchSize { return t }
        guard n > 0, batchSize % n == 0 else {
            throw PipelineError.invalidArgument("cannot repeat a batch of \(n) to \(batchSize)")
        }
        return try Tensor.concatenate([Tensor](repeating: t, count: batchSize / n), axis: 0)
    }
}
