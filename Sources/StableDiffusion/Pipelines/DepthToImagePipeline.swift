import Foundation
import DiffusionTensor

/// diffusers' `StableDiffusionDepth2ImgPipeline`: image-to-image with a 5-channel UNet whose extra
/// channel is a depth map (given, or estimated by the folder's DPT depth estimator), resized to latent
/// size with bicubic interpolation and normalised per image to [-1, 1].
public final class StableDiffusionDepth2ImgPipeline: @unchecked Sendable {
    public let components: StableDiffusionComponents
    /// The folder's `depth_estimator` + `feature_extractor`, when present.
    public let depthEstimator: (any DepthEstimating)?

    public init(components: StableDiffusionComponents, depthEstimator: (any DepthEstimating)? = nil) throws {
        guard components.family == .stableDiffusion else {
            throw PipelineError.badModel(path: components.directory.path, detail: "depth-to-image is not supported for SDXL models yet")
        }
        let c = components
        guard c.unet.config.inChannels == c.vae.config.latentChannels + 1 else {
            throw PipelineError.badModel(path: c.directory.path,
                                         detail: "depth-to-image needs a UNet with latents + depth (\(c.vae.config.latentChannels + 1)) input channels, this one has \(c.unet.config.inChannels)")
        }
        guard c.vae.hasEncoder else { throw PipelineError.badModel(path: c.directory.path, detail: "depth-to-image needs the VAE encoder") }
        self.components = c
        self.depthEstimator = depthEstimator
    }

    /// Loads the folder, including its depth estimator when it has one (which stays fp32 whatever `precision`).
    public convenience init(modelDirectory: URL, variant: String? = nil, adapters: ModelAdapters = ModelAdapters(),
                            precision: ComputePrecision = .fp32) throws {
        try self.init(loadingEstimatorFor: StableDiffusionComponents(directory: modelDirectory, variant: variant, adapters: adapters,
                                                                     precision: precision),
                      variant: variant)
    }

    /// On components already loaded (e.g. shared by a server), loading their folder's depth estimator when it
    /// has one (a single-file checkpoint carries none: depth maps must then be given).
    public convenience init(loadingEstimatorFor components: StableDiffusionComponents, variant: String? = nil) throws {
        let hasEstimator = components.index.components["depth_estimator"] != nil && components.singleFileDetection == nil
        let estimator: (any DepthEstimating)? = hasEstimator
            ? try DepthEstimators.load(modelDirectory: components.directory, variant: variant) : nil
        try self.init(components: components, depthEstimator: estimator)
    }

    /// - Parameters:
    ///   - image: the preprocessed input, NHWC `[1, h, w, 3]` in [-1, 1] (sides multiples of 8).
    ///   - originalSize: the input's size before rounding (diffusers sizes the depth map from it).
    ///   - depthMap: `[n, H, W]` (any size; resized here), or nil to estimate it from `rgb8`.
    ///   - rgb8: the 8-bit input image, needed only to estimate depth.
    public func callAsFunction(_ options: GenerationOptions, image: Tensor, originalSize: (height: Int, width: Int)? = nil,
                               depthMap: Tensor?, rgb8: Image? = nil, strength: Double = 0.8,
                               progress: ProgressHandler? = nil) throws -> GenerationResult {
        let c = components
        try options.validate(vaeScaleFactor: c.vaeScaleFactor)
        try options.refuseControlNets("depth-to-image")
        guard strength >= 0, strength <= 1 else { throw PipelineError.invalidArgument("strength must be in [0, 1], got \(strength)") }
        guard image.rank == 4, image.shape[3] == 3, image.shape[1] % c.vaeScaleFactor == 0, image.shape[2] % c.vaeScaleFactor == 0 else {
            throw PipelineError.invalidArgument("image must be NHWC RGB with sides that are multiples of \(c.vaeScaleFactor), got \(image.shape)")
        }
        let cfg = options.classifierFreeGuidance
        var scheduler = try PipelineSupport.makeScheduler(c, options)
        let embeddings = try c.encodePrompt(options)

        var depth: Tensor
        if let depthMap {
            depth = depthMap
        } else {
            guard let estimator = depthEstimator else {
                throw PipelineError.invalidArgument("no depth map given and the model has no depth estimator")
            }
            guard let rgb8 else { throw PipelineError.invalidArgument("estimating depth needs the 8-bit input image") }
            depth = try estimator.predictDepth(rgb8)
        }
        let size = originalSize ?? (image.shape[1], image.shape[2])
        let depthChannels = try Self.prepareDepth(depth, latentHeight: size.height / c.vaeScaleFactor, latentWidth: size.width / c.vaeScaleFactor,
                                                 batchSize: options.batchSize, classifierFreeGuidance: cfg)
        guard depthChannels.shape[1] == image.shape[1] / c.vaeScaleFactor, depthChannels.shape[2] == image.shape[2] / c.vaeScaleFactor else {
            throw PipelineError.invalidArgument("the original size \(size) does not round to the image's \(image.shape[1])x\(image.shape[2])")
        }

        try scheduler.setTimesteps(options.numInferenceSteps)
        let timesteps = try LatentPreparation.truncatedTimesteps(&scheduler, steps: options.numInferenceSteps, strength: strength)
        var (generators, seed) = try options.makeGenerator()
        let latents = try LatentPreparation.noisedImageLatents(image, vae: c.vae, scheduler: scheduler, timesteps: timesteps,
                                                               batchSize: options.batchSize, generator: &generators)
        let start = Date()
        var generator: RandomGenerators? = generators
        let out = try PipelineSupport.loop(c, options, classifierFreeGuidance: cfg)
            .run(latents: latents, timesteps: timesteps, scheduler: &scheduler, conditioning: UNetConditioning(encoderHiddenStates: embeddings),
                 generator: &generator, extraChannels: depthChannels, progress: progress)
        return try PipelineSupport.result(out, vae: c.vae, seed: seed, scheduler: scheduler, start: start)
    }

    /// diffusers' `prepare_depth_map` after estimation: bicubic resize (align_corners=False) to latent
    /// size, per-image min/max normalisation to [-1, 1], repeat to the batch, double for guidance.
    /// Returns NHWC `[batch (x2), h, w, 1]`.
    static func prepareDepth(_ depth: Tensor, latentHeight: Int, latentWidth: Int, batchSize: Int,
                             classifierFreeGuidance: Bool) throws -> Tensor {
        var d = depth
        if d.rank == 2 { d = try d.reshaped([1] + d.shape) }
        guard d.rank == 3, d.shape[0] >= 1, d.shape[1] > 0, d.shape[2] > 0 else {
            throw PipelineError.invalidArgument("depth map must be (H, W), (1, H, W) or (B, H, W), got \(depth.shape)")
        }
        guard latentHeight > 0, latentWidth > 0 else { throw PipelineError.invalidArgument("image too small for a depth map") }
        var resized = try d.reshaped(d.shape + [1]).resized(height: latentHeight, width: latentWidth, mode: .bicubic)
        let per = latentHeight * latentWidth
        try resized.withUnsafeMutableBufferPointer { p in
            for b in 0..<d.shape[0] {
                let slice = p[(b * per)..<((b + 1) * per)]
                guard let lo = slice.min(), let hi = slice.max(), lo.isFinite, hi.isFinite else {
                    throw PipelineError.invalidArgument("depth map \(b) contains non-finite values")
                }
                guard hi > lo else { throw PipelineError.invalidArgument("depth map \(b) is constant: it cannot be normalised") }
                for i in (b * per)..<((b + 1) * per) { p[i] = 2 * (p[i] - lo) / (hi - lo) - 1 }
            }
        }
        if resized.shape[0] < batchSize {
            guard batchSize % resized.shape[0] == 0 else {
                throw PipelineError.invalidArgument("\(resized.shape[0]) depth maps for a batch of \(batchSize)")
            }
            resized = try LatentPreparation.repeatBatch(resized, to: batchSize)
        }
        return classifierFreeGuidance ? try Tensor.concatenate([resized, resized], axis: 0) : resized
    }
}

/// Something that predicts a depth map `[1, H, W]` for an 8-bit RGB image (the DPT model).
public protocol DepthEstimating: Sendable {
    func predictDepth(_ image: Image) throws -> Tensor
}
