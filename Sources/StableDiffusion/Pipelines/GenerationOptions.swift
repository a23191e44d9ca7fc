/// Parameters shared by every pipeline call, with diffusers' names and defaults.
public struct GenerationOptions: Sendable {
    /// One prompt, or several (a batch).
    public var prompts: [String]
    /// nil: the unconditional (empty) prompt. One entry applies to every prompt; otherwise one per prompt.
    public var negativePrompts: [String]?
    /// SDXL: the prompts for the second tokenizer and text encoder (diffusers' `prompt_2`); nil: `prompts`.
    public var prompts2: [String]?
    /// SDXL: the negative prompts for the second encoder (`negative_prompt_2`); nil: `negativePrompts`.
    public var negativePrompts2: [String]?
    /// SDXL's size, crop and aesthetic-score conditioning.
    public var microConditioning = MicroConditioning()
    /// Output size in pixels (multiples of 8); nil: the UNet's `sample_size` x the VAE scale factor
    /// (text-to-image) or the input image's size (image-to-image).
    public var height: Int?
    public var width: Int?
    public var numInferenceSteps: Int = 50
    /// Classifier-free guidance scale; guidance is skipped at <= 1.
    public var guidanceScale: Float = 7.5
    public var numImagesPerPrompt: Int = 1
    /// The seed of a `torch.Generator("cpu").manual_seed(seed)`; nil picks a random one (reported back).
    public var seed: UInt64?
    /// One seed per generated image (diffusers' list of generators); overrides `seed`.
    public var perImageSeeds: [UInt64]?
    /// DDIM's eta (ignored by other schedulers, as in diffusers).
    public var eta: Float = 0
    /// Use the output of an earlier text-encoder layer (diffusers' `clip_skip`: 1 takes the
    /// penultimate layer's output, through the final layer norm).
    public var clipSkip: Int?
    /// How prompts are read: `.plain` (diffusers, 77 tokens) or `.a1111` (weights, BREAK, long prompts).
    public var promptSyntax: PromptSyntax = .plain
    /// Replace the model's scheduler class, keeping its config (CLI names: `pndm`, `ddim`, `euler-a`, ...).
    public var scheduler: String?
    /// Overrides the scheduler config's `timestep_spacing` (`linspace`, `leading`, `trailing`), as
    /// `X.from_config(config, timestep_spacing=...)` in the recipes of SDXL-Turbo, Lightning and Hyper-SD.
    public var timestepSpacing: String?
    public static let timestepSpacings = ["linspace", "leading", "trailing"]
    /// LCM's and TCD's distillation schedule length for this call (diffusers' `original_inference_steps`
    /// argument of `set_timesteps` / the LCM pipelines); nil: the scheduler config's (50).
    public var originalInferenceSteps: Int?
    /// Start from these latents (NHWC, `[batch*images, h/8, w/8, 4]`) instead of drawing them (text-to-image).
    public var latents: Tensor?
    /// diffusers' `denoising_end` (SDXL base in an ensemble of expert denoisers): stop once this fraction of
    /// the noise schedule is done, at the first timestep below `(1 - denoisingEnd) x num_train_timesteps`.
    /// In (0, 1); usually with `outputType = .latents`.
    public var denoisingEnd: Double?
    /// diffusers' `denoising_start` (image-to-image; the refiner in an ensemble): skip the first fraction of
    /// the schedule and denoise the given latents from there, without adding noise. Overrides `strength`.
    public var denoisingStart: Double?
    /// `.latents` skips the VAE decode (diffusers' `output_type="latent"`): `GenerationResult.latents` only.
    public var outputType: OutputType = .images
    /// ControlNets that steer every step (diffusers' ControlNet pipelines; several are summed, as
    /// `MultiControlNetModel`). Text-to-image, image-to-image and inpainting.
    public var controlNets: [ControlNetUnit] = []
    /// diffusers' `guess_mode`: the ControlNets see only the conditional half of a guidance batch, and their
    /// residuals are scaled from 0.1 (first skip) to 1 (mid block).
    public var guessMode = false
    /// Lets another thread stop the run after its current step with the picture so far (see `PipelineInterruption`).
    public var interruption: PipelineInterruption?

    public init(prompt: String, negativePrompt: String? = nil) {
        prompts = [prompt]
        negativePrompts = negativePrompt.map { [$0] }
    }

    public init(prompts: [String], negativePrompts: [String]? = nil) {
        self.prompts = prompts
        self.negativePrompts = negativePrompts
    }

    /// What a pipeline call returns.
    public enum OutputType: Sendable { case images, latents }

    /// Set by `StableDiffusionComponents.resolvingGuidance` for a UNet that takes the guidance scale as an
    /// embedding (LCM-distilled, `time_cond_proj_dim`): then there is no unconditional batch, as diffusers'
    /// `do_classifier_free_guidance` is false for such UNets.
    var guidanceEmbedded = false
    /// Inpainting's `padding_mask_crop` region, which the control images are cropped to as the image is
    /// (set by the 8-bit image entry point, which computes it).
    var controlImageCrop: CropRegion?
    /// diffusers' `do_classifier_free_guidance`: guidance above 1, unless the UNet embeds it.
    var classifierFreeGuidance: Bool { guidanceScale > 1 && !guidanceEmbedded }
    var batchSize: Int { prompts.count * numImagesPerPrompt }

    /// The checks diffusers' `check_inputs` makes, before any work.
    func validate(vaeScaleFactor: Int) throws {
        guard !prompts.isEmpty else { throw PipelineError.invalidArgument("prompt must not be empty (give at least one prompt)") }
        if let h = height, h <= 0 || h % 8 != 0 { throw PipelineError.invalidArgument("height must be a positive multiple of 8, got \(h)") }
        if let w = width, w <= 0 || w % 8 != 0 { throw PipelineError.invalidArgument("width must be a positive multiple of 8, got \(w)") }
        if let s = timestepSpacing, !Self.timestepSpacings.contains(s) {
            throw PipelineError.invalidArgument("timestep spacing must be one of \(Self.timestepSpacings.joined(separator: ", ")), got \(s)")
        }
        if let n = originalInferenceSteps, n < 1 { throw PipelineError.invalidArgument("original inference steps must be >= 1, got \(n)") }
        guard numInferenceSteps >= 1 else { throw PipelineError.invalidArgument("number of inference steps must be >= 1, got \(numInferenceSteps)") }
        guard numImagesPerPrompt >= 1 else { throw PipelineError.invalidArgument("number of images per prompt must be >= 1, got \(numImagesPerPrompt)") }
        guard guidanceScale.isFinite else { throw PipelineError.invalidArgument("guidance scale must be a finite number") }
        if let n = negativePrompts, n.count != 1, n.count != prompts.count {
            throw PipelineError.invalidArgument("negative prompt has \(n.count) entries but prompt has \(prompts.count)")
        }
        if let seeds = perImageSeeds, seeds.count != batchSize {
            throw PipelineError.invalidArgument("\(seeds.count) per-image seeds given for \(batchSize) images")
        }
        if let n = prompts2, n.count != 1, n.count != prompts.count {
            throw PipelineError.invalidArgument("prompt 2 has \(n.count) entries but prompt has \(prompts.count)")
        }
        if let n = negativePrompts2, n.count != 1, n.count != prompts.count {
            throw PipelineError.invalidArgument("negative prompt 2 has \(n.count) entries but prompt has \(prompts.count)")
        }
        for (name, size) in [("original size", microConditioning.originalSize), ("target size", microConditioning.targetSize)] {
            if let size, size.height <= 0 || size.width <= 0 {
                throw PipelineError.invalidArgument("\(name) must be positive, got \(size.width)x\(size.height)")
            }
        }
        if !microConditioning.aestheticScore.isFinite || !microConditioning.negativeAestheticScore.isFinite {
            throw PipelineError.invalidArgument("aesthetic scores must be finite numbers")
        }
        for (name, value) in [("denoising end", denoisingEnd), ("denoising start", denoisingStart)] {
            if let value, !(value > 0 && value < 1) {
                throw PipelineError.invalidArgument("\(name) must be a fraction in (0, 1), got \(value)")
            }
        }
        if let start = denoisingStart, let end = denoisingEnd, start >= end {
            throw PipelineError.invalidArgument("denoising start \(start) must be below denoising end \(end)")
        }
        if let c = clipSkip, c < 0 { throw PipelineError.invalidArgument("clip skip must be >= 0, got \(c)") }
        for (i, unit) in controlNets.enumerated() { try unit.validate(index: i) }
        if let s = scheduler, !Schedulers.cliNames.contains(s) {
            throw PipelineError.invalidArgument("unknown scheduler \"\(s)\" (choose from \(Schedulers.cliNames.joined(separator: ", ")))")
        }
    }

    /// Pipelines without a ControlNet variant in diffusers refuse ControlNets rather than ignore them.
    func refuseControlNets(_ pipeline: String) throws {
        guard controlNets.isEmpty else {
            throw PipelineError.invalidArgument("ControlNet works with text-to-image, image-to-image and inpainting, not \(pipeline)")
        }
    }

    /// The generator(s) for this call and the seed actually used.
    func makeGenerator() throws -> (RandomGenerators, UInt64) {
        if let seeds = perImageSeeds {
            return (try RandomGenerators(perImage: seeds.map { TorchGenerator(seed: $0) }), seeds[0])
        }
        let s = seed ?? UInt64.random(in: 0...UInt64(UInt32.max))
        return (RandomGenerators(seed: s), s)
    }
}

/// What a pipeline call returns.
public struct GenerationResult: Sendable {
    /// The images, `[batch, height, width, 3]` NHWC, in [0, 1] (diffusers' "np" output); `[batch, 0, 0, 3]`
    /// with `OutputType.latents`.
    public let images: Tensor
    /// The final latents before VAE decoding (NHWC), as diffusers' `output_type="latent"` gives.
    public let latents: Tensor
    /// The seed used (the first one with per-image seeds).
    public let seed: UInt64
    /// The scheduler class that ran (e.g. `PNDMScheduler`).
    public let schedulerName: String
    public let denoisingSeconds: Double
    /// Set when `GenerationOptions.interruption` stopped the run: the steps done. The images are then the
    /// decoded denoised estimate at that step (AUTOMATIC1111's interrupted picture), `latents` that estimate.
    public var stoppedAfterStep: Int? = nil

    public var count: Int { images.shape[0] }
    /// False for a latents-only result (`OutputType.latents`).
    public var hasImages: Bool { images.count > 0 }

    /// Image `i` as 8-bit RGB rows, rounded as diffusers' `numpy_to_pil` does.
    public func rgb8(_ i: Int) -> [UInt8] {
        let (h, w) = (images.shape[1], images.shape[2])
        let n = h * w * 3
        return images.withUnsafeBufferPointer { p in
            (0..<n).map { UInt8((p[i * n + $0] * 255).rounded(.toNearestOrEven)) }
        }
    }
}
