import DiffusionTensor

/// The ControlNets of one pipeline call, with their control images prepared as diffusers' `prepare_image`
/// does (resized to the working size, RGB in [0, 1], repeated to the batch, doubled for classifier-free
/// guidance unless in guess mode). The denoising loop asks it for each step's residuals.
struct ControlNetGuidance {
    struct Prepared {
        let unit: ControlNetUnit
        let image: Tensor
    }
    let units: [Prepared]
    /// diffusers' `guess_mode`, also forced by a `global_pool_conditions` model.
    let guessMode: Bool
    /// The scale of a unit that gives none.
    let defaultScale: Float

    /// Nil when `options` has no ControlNet. Inpainting with `padding_mask_crop` crops the control images
    /// as the image (`options.controlImageCrop`) and fits them with `resize_mode="fill"`.
    static func make(_ options: GenerationOptions, _ c: StableDiffusionComponents, task: ControlNetTask,
                     height: Int, width: Int) throws -> ControlNetGuidance? {
        guard !options.controlNets.isEmpty else { return nil }
        let crop = options.controlImageCrop
        return try ControlNetGuidance(options, c, height: height, width: width, crop: crop, resizeMode: crop == nil ? .default : .fill,
                                      defaultScale: task.defaultScale(c.family))
    }

    private init(_ options: GenerationOptions, _ c: StableDiffusionComponents, height: Int, width: Int,
                 crop: CropRegion?, resizeMode: ImageResizeMode, defaultScale: Float) throws {
        self.defaultScale = defaultScale
        let processor = try VaeImageProcessor(vaeScaleFactor: c.vaeScaleFactor, doNormalize: false, doConvertRGB: true)
        // diffusers reads global_pool_conditions from the first ControlNet.
        guessMode = options.guessMode || options.controlNets[0].model.config.globalPoolConditions
        let doubled = options.classifierFreeGuidance && !guessMode
        units = try options.controlNets.enumerated().map { i, unit in
            try unit.validate(index: i)
            try unit.model.checkFits(c, name: "ControlNet \(i + 1)")
            let one = try processor.preprocess(unit.image, height: height, width: width, resizeMode: crop == nil ? unit.resizeMode : resizeMode,
                                               cropCoords: crop)
            let batch = try LatentPreparation.repeatBatch(one, to: options.batchSize)
            return Prepared(unit: unit, image: doubled ? try Tensor.concatenate([batch, batch], axis: 0) : batch)
        }
    }

    /// The summed residuals of every ControlNet active at step `i` of `n`, or nil when none is (a ControlNet
    /// outside its window adds zeros in diffusers; skipping it gives the same sums).
    /// - Parameter input: the scaled latents the UNet gets at this step (the doubled batch with guidance),
    ///   before any extra channels.
    func residuals(step i: Int, of n: Int, input: Tensor, timestep: Double, conditioning: UNetConditioning,
                   classifierFreeGuidance: Bool) throws -> ControlResiduals? {
        let condOnly = guessMode && classifierFreeGuidance
        let half = input.shape[0] / 2
        let sample = condOnly ? try input.slice(axis: 0, half..<input.shape[0]) : input
        let netConditioning = condOnly ? try conditioning.conditionalHalf() : conditioning
        var sum: ControlResiduals?
        for p in units {
            let scale = p.unit.scale(step: i, of: n, defaultScale: defaultScale)
            guard scale != 0 else { continue }
            let r = try p.unit.model(sample: sample, timesteps: [Float(timestep)], conditioning: netConditioning,
                                     controlImage: p.image, scale: scale, guessMode: guessMode, decayingScales: p.unit.decayingScales)
            sum = try sum.map { try $0.adding(r) } ?? r
        }
        guard let sum else { return nil }
        return condOnly ? try sum.prependingZeros(batch: half) : sum
    }
}
