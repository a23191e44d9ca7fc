import Foundation
import DiffusionTensor

/// diffusers' `UNet2DConditionModel`, NHWC, for every Stable Diffusion variant (SD 1.x/2.x, 9-channel
/// inpainting, 5-channel depth, 7-channel x4 upscaler with class embeddings).
public final class UNet2DConditionModel: @unchecked Sendable {
    public let config: UNet2DConditionConfig

    let convIn: Conv2D
    let timeEmbedding: TimeEmbedding
    let downBlocks: [UNetDownBlock]
    let midBlock: UNetMidBlock?
    let upBlocks: [UNetUpBlock]
    let normOut: GroupNorm
    let convOut: Conv2D

    /// Builds the network from `config` and loads every weight from `weights` (diffusers names), strictly:
    /// a missing, mis-shaped or unexpected tensor is an error naming it. `precision` applies to every
    /// convolution and linear layer; attention's own products stay fp32 (see `ComputePrecision`).
    public init(config c: UNet2DConditionConfig, weights: any TensorSource, precision: ComputePrecision = .fp32) throws {
        config = c
        let r = WeightReader(weights, precision: precision)
        let ch0 = c.blockOutChannels[0], temb = c.timeEmbeddingDim
        convIn = try r.conv2d("conv_in", in: c.inChannels, out: ch0, kernel: c.convInKernel)
        timeEmbedding = try TimeEmbedding(r, config: c)
        let n = c.blockOutChannels.count
        var downs: [UNetDownBlock] = []
        var outC = ch0
        for i in 0..<n {
            let inC = outC
            outC = c.blockOutChannels[i]
            downs.append(try UNetDownBlock(r, "down_blocks.\(i)", config: c, index: i, in: inC, out: outC, isFinal: i == n - 1))
        }
        downBlocks = downs
        midBlock = c.hasMidBlock ? try UNetMidBlock(r, "mid_block", config: c) : nil
        let reversed = Array(c.blockOutChannels.reversed())
        var ups: [UNetUpBlock] = []
        outC = reversed[0]
        for i in 0..<n {
            let prev = outC
            outC = reversed[i]
            let skipIn = reversed[min(i + 1, n - 1)]
            ups.append(try UNetUpBlock(r, "up_blocks.\(i)", config: c, reversedIndex: i, prevOut: prev, out: outC,
                                       skipIn: skipIn, isFinal: i == n - 1))
        }
        upBlocks = ups
        normOut = try r.groupNorm("conv_norm_out", channels: ch0, groups: c.normNumGroups, eps: c.normEps)
        convOut = try r.conv2d("conv_out", in: ch0, out: c.outChannels, kernel: c.convOutKernel)
        try r.requireAllUsed()
        r.finishLoading()
    }

    /// One denoising step's noise (or v / sample) prediction.
    /// - Parameters:
    ///   - sample: `[batch, h, w, inChannels]` latents (NHWC).
    ///   - timesteps: one timestep for the whole batch, or one per sample.
    ///   - encoderHiddenStates: `[batch, tokens, crossAttentionDim]` text embeddings.
    ///   - classLabels: per-sample class labels (the upscaler's noise level) when the config has class embeddings.
    public func callAsFunction(sample: Tensor, timesteps: [Float], encoderHiddenStates: Tensor, classLabels: [Float]? = nil) throws -> Tensor {
        try self(sample: sample, timesteps: timesteps,
                 conditioning: UNetConditioning(encoderHiddenStates: encoderHiddenStates, classLabels: classLabels))
    }

    /// One denoising step's prediction with every conditioning input in one value.
    public func callAsFunction(sample: Tensor, timesteps: [Float], conditioning: UNetConditioning) throws -> Tensor {
        let c = config
        guard sample.rank == 4, sample.shape[3] == c.inChannels else {
            throw TensorError.shapeMismatch("UNet expects NHWC latents with \(c.inChannels) channels, got \(sample.shape)")
        }
        let b = sample.shape[0]
        try conditioning.validate(for: c, batch: b)
        guard timesteps.count == 1 || timesteps.count == b else {
            throw TensorError.shapeMismatch("UNet got \(timesteps.count) timesteps for a batch of \(b)")
        }
        let encoderHiddenStates = conditioning.encoderHiddenStates
        let steps = timesteps.count == 1 ? [Float](repeating: timesteps[0], count: b) : timesteps
        let tembAct = try timeEmbedding(steps, conditioning: conditioning).silu()

        var h = c.centerInputSample ? sample.scaled(by: 2, adding: -1) : sample
        h = try convIn(h)
        var skips = [h]
        for block in downBlocks {
            h = try block(h, tembAct: tembAct, context: encoderHiddenStates, skips: &skips)
        }
        if let control = conditioning.controlResiduals {
            try control.validate(against: skips, middle: h)
            for i in skips.indices { skips[i] = try skips[i] + control.down[i] }
        }
        if let midBlock { h = try midBlock(h, tembAct: tembAct, context: encoderHiddenStates) }
        if let control = conditioning.controlResiduals { h = try h + control.middle }
        // Sizes that are not multiples of 2^upsamplers are upsampled to the skip's size, as diffusers does.
        for (i, block) in upBlocks.enumerated() {
            let remaining = block.resnets.count
            let isFinal = i == upBlocks.count - 1
            var size: (Int, Int)? = nil
            if !isFinal, skips.count > remaining {
                let next = skips[skips.count - remaining - 1]
                if next.shape[1] != 2 * h.shape[1] || next.shape[2] != 2 * h.shape[2] { size = (next.shape[1], next.shape[2]) }
            }
            h = try block(h, tembAct: tembAct, context: encoderHiddenStates, skips: &skips, upsampleSize: size)
        }
        return try normOut.then(convOut, h, activation: .silu)
    }
}
