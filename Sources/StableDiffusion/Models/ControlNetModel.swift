import Foundation
import DiffusionTensor

/// diffusers' `ControlNetModel`, NHWC: a copy of the UNet's down half that also sees an embedding of the
/// control image, with a zero-initialised 1x1 convolution on each of its skip outputs and on its mid
/// block's output. Those outputs are added to the UNet's (`ControlResiduals`).
public final class ControlNetModel: @unchecked Sendable {
    public let config: ControlNetConfig

    let convIn: Conv2D
    let timeEmbedding: TimeEmbedding
    let condEmbedding: [Conv2D]
    let downBlocks: [UNetDownBlock]
    let midBlock: UNetMidBlock?
    /// `controlnet_down_blocks` (one per skip output) and `controlnet_mid_block`: 1x1 convolutions, as linear maps.
    let downProjections: [Linear]
    let midProjection: Linear

    /// Builds the network from `config` and loads every weight from `weights` (diffusers names), strictly.
    public init(config cfg: ControlNetConfig, weights: any TensorSource, precision: ComputePrecision = .fp32) throws {
        config = cfg
        let c = cfg.encoder
        let r = WeightReader(weights, precision: precision)
        let ch0 = c.blockOutChannels[0]
        convIn = try r.conv2d("conv_in", in: c.inChannels, out: ch0, kernel: 3)
        timeEmbedding = try TimeEmbedding(r, config: c)
        // ControlNetConditioningEmbedding: conv_in, then per width step a 3x3 and a stride-2 3x3, then conv_out.
        let widths = cfg.conditioningEmbeddingOutChannels
        var embedding = [try r.conv2d("controlnet_cond_embedding.conv_in", in: cfg.conditioningChannels, out: widths[0], kernel: 3)]
        for i in 0..<(widths.count - 1) {
            embedding.append(try r.conv2d("controlnet_cond_embedding.blocks.\(2 * i)", in: widths[i], out: widths[i], kernel: 3))
            embedding.append(try r.conv2d("controlnet_cond_embedding.blocks.\(2 * i + 1)", in: widths[i], out: widths[i + 1], kernel: 3, stride: 2))
        }
        embedding.append(try r.conv2d("controlnet_cond_embedding.conv_out", in: widths[widths.count - 1], out: ch0, kernel: 3))
        condEmbedding = embedding
        let n = c.blockOutChannels.count
        var downs: [UNetDownBlock] = []
        var projections = [try r.linear("controlnet_down_blocks.0", in: ch0, out: ch0)]
        var outC = ch0
        for i in 0..<n {
            let inC = outC
            outC = c.blockOutChannels[i]
            let block = try UNetDownBlock(r, "down_blocks.\(i)", config: c, index: i, in: inC, out: outC, isFinal: i == n - 1)
            downs.append(block)
            for _ in 0..<(block.resnets.count + (block.downsampler == nil ? 0 : 1)) {
                projections.append(try r.linear("controlnet_down_blocks.\(projections.count)", in: outC, out: outC))
            }
        }
        downBlocks = downs
        downProjections = projections
        midBlock = c.hasMidBlock ? try UNetMidBlock(r, "mid_block", config: c) : nil
        midProjection = try r.linear("controlnet_mid_block", in: outC, out: outC)
        try r.requireAllUsed()
        r.finishLoading()
    }

    /// Loads a diffusers ControlNet folder (`config.json` and `diffusion_pytorch_model[.variant].safetensors`
    /// or `.bin`, sharded or not).
    public convenience init(directory: URL, variant: String? = nil, precision: ComputePrecision = .fp32) throws {
        let configURL = directory.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: configURL.path) else {
            throw PipelineError.badModel(path: directory.path, detail: "not a ControlNet folder: config.json is missing")
        }
        let config = try ControlNetConfig.load(configURL)
        let weights = try WeightFiles.open(directory: directory, stems: ["diffusion_pytorch_model"], variant: variant)
        try self.init(config: config, weights: weights, precision: precision)
    }

    /// The residuals for one step.
    /// - Parameters:
    ///   - sample: the scaled latents, `[batch, h, w, inChannels]`, as the UNet gets them (without inpainting's extra channels).
    ///   - controlImage: `[batch, h x f, w x f, conditioningChannels]` in [0, 1], `f` the VAE scale factor.
    ///   - scale: diffusers' `conditioning_scale`.
    ///   - guessMode: scale the residuals from 0.1 (first skip) to 1 (mid block) on a log scale, as diffusers.
    ///   - decayingScales: the web UI's "My prompt is more important": residual `i` of `n` times `0.825^(n-1-i)`.
    public func callAsFunction(sample: Tensor, timesteps: [Float], conditioning: UNetConditioning, controlImage: Tensor,
                               scale: Float = 1, guessMode: Bool = false, decayingScales: Bool = false) throws -> ControlResiduals {
        let c = config.encoder
        guard sample.rank == 4, sample.shape[3] == c.inChannels else {
            throw TensorError.shapeMismatch("ControlNet expects NHWC latents with \(c.inChannels) channels, got \(sample.shape)")
        }
        let b = sample.shape[0]
        let f = config.controlImageScaleFactor
        guard controlImage.rank == 4, controlImage.shape[0] == b, controlImage.shape[3] == config.conditioningChannels,
              controlImage.shape[1] == sample.shape[1] * f, controlImage.shape[2] == sample.shape[2] * f else {
            throw TensorError.shapeMismatch("ControlNet control image must be [\(b), \(sample.shape[1] * f), \(sample.shape[2] * f), \(config.conditioningChannels)] for latents \(sample.shape), got \(controlImage.shape)")
        }
        var unetConditioning = conditioning
        unetConditioning.timestepCondition = nil  // diffusers' ControlNet pipelines pass no timestep_cond
        unetConditioning.controlResiduals = nil
        try unetConditioning.validate(for: c, batch: b)
        guard timesteps.count == 1 || timesteps.count == b else {
            throw TensorError.shapeMismatch("ControlNet got \(timesteps.count) timesteps for a batch of \(b)")
        }
        let steps = timesteps.count == 1 ? [Float](repeating: timesteps[0], count: b) : timesteps
        let tembAct = try timeEmbedding(steps, conditioning: unetConditioning).silu()
        let context = conditioning.encoderHiddenStates

        var hint = config.reversesChannels ? reversedChannels(controlImage) : controlImage
        for (i, conv) in condEmbedding.enumerated() {
            hint = try conv(hint, activation: i == condEmbedding.count - 1 ? .identity : .silu)
        }
        var h = try convIn(sample, residual: hint)
        var skips = [h]
        for block in downBlocks {
            h = try block(h, tembAct: tembAct, context: context, skips: &skips)
        }
        if let midBlock { h = try midBlock(h, tembAct: tembAct, context: context) }
        let scales: [Float]
        if guessMode && !config.globalPoolConditions {
            // torch.logspace(-1, 0, n + 1) (float32), times the conditioning scale.
            let n = skips.count
            scales = (0...n).map { Float(pow(10, -1 + Double($0) / Double(n))) * scale }
        } else if decayingScales {
            let n = skips.count + 1
            scales = (0..<n).map { scale * Float(pow(0.825, Double(n - 1 - $0))) }
        } else {
            scales = [Float](repeating: scale, count: skips.count + 1)
        }
        var down = try zip(skips, downProjections).enumerated().map { i, pair in try pair.1(pair.0) * scales[i] }
        var middle = try midProjection(h) * scales[skips.count]
        if config.globalPoolConditions {
            down = down.map(spatialMean)
            middle = spatialMean(middle)
        }
        return ControlResiduals(down: down, middle: middle)
    }
}

extension ControlNetModel {
    /// A ControlNet trained for another base model fails deep inside the network; this says which and why
    /// first (`name` is how the error calls it).
    public func checkFits(_ c: StableDiffusionComponents, name: String) throws {
        let control = config.encoder, unet = c.unet.config
        var problems: [String] = []
        if control.inChannels != c.vae.config.latentChannels {
            problems.append("it takes \(control.inChannels)-channel latents, the model's VAE gives \(c.vae.config.latentChannels)")
        }
        if control.crossAttentionDim != unet.crossAttentionDim {
            problems.append("its cross-attention width is \(control.crossAttentionDim), the UNet's \(unet.crossAttentionDim)")
        }
        if control.blockOutChannels != unet.blockOutChannels || control.layersPerBlock != unet.layersPerBlock {
            problems.append("its blocks \(control.blockOutChannels) x \(control.layersPerBlock) differ from the UNet's \(unet.blockOutChannels) x \(unet.layersPerBlock)")
        }
        if control.textTimeEmbedding != unet.textTimeEmbedding {
            problems.append(control.textTimeEmbedding == nil ? "it is not an SDXL ControlNet and the model is SDXL" : "it is an SDXL ControlNet and the model is not")
        }
        if !problems.isEmpty {
            throw PipelineError.invalidArgument("\(name) does not fit this model (\(c.family)): \(problems.joined(separator: "; "))")
        }
    }
}

/// The channels of an NHWC tensor in reverse order (a "bgr" ControlNet's `torch.flip(cond, dims=[1])`).
private func reversedChannels(_ x: Tensor) -> Tensor {
    let c = x.shape[x.rank - 1]
    var out = Tensor(uninitializedShape: x.shape)
    x.withUnsafeBufferPointer { s in
        out.withUnsafeMutableBufferPointer { o in
            for p in stride(from: 0, to: s.count, by: c) {
                for k in 0..<c { o[p + k] = s[p + c - 1 - k] }
            }
        }
    }
    return out
}

/// `torch.mean(x, dim=(2, 3), keepdim=True)` broadcast back over the spatial size, as the UNet's addition
/// of a `[b, c, 1, 1]` residual does.
private func spatialMean(_ x: Tensor) -> Tensor {
    let (b, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    var out = Tensor(uninitializedShape: x.shape)
    x.withUnsafeBufferPointer { s in
        out.withUnsafeMutableBufferPointer { o in
            for n in 0..<b {
                var sums = [Double](repeating: 0, count: c)
                for p in 0..<(h * w) {
                    let base = (n * h * w + p) * c
                    for k in 0..<c { sums[k] += Double(s[base + k]) }
                }
                let means = sums.map { Float($0 / Double(h * w)) }
                for p in 0..<(h * w) {
                    let base = (n * h * w + p) * c
                    for k in 0..<c { o[base + k] = means[k] }
                }
            }
        }
    }
    return out
}
