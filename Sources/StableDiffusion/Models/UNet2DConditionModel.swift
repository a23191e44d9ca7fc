import Foundation
import DiffusionTensor

/// diffusers' `UNet2DConditionModel`, NHWC, for every Stable Diffusion variant (SD 1.x/2.x, 9-channel
/// inpainting, 5-channel depth, 7-channel x4 upscaler with class embeddings).
public final class UNet2DConditionModel: @unchecked Sendable {
    public let config: UNet2DConditionConfig

    let convIn: Conv2D
    let timeLinear1: Linear, timeLinear2: Linear
    let classTable: Tensor?
    let classLinear1: Linear?, classLinear2: Linear?
    /// SDXL's `add_embedding` (a `TimestepEmbedding` of the pooled text embedding and time-id features).
    let addLinear1: Linear?, addLinear2: Linear?
    /// LCM's `time_embedding.cond_proj` (no bias): the guidance embedding onto the timestep features.
    let timeCondProj: Linear?
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
        timeLinear1 = try r.linear("time_embedding.linear_1", in: ch0, out: temb)
        timeLinear2 = try r.linear("time_embedding.linear_2", in: temb, out: temb)
        timeCondProj = try c.timeCondProjDim.map { try r.linear("time_embedding.cond_proj", in: $0, out: ch0, bias: false) }
        switch c.classEmbedding {
        case .table(let count)?:
            classTable = try r.tensor("class_embedding.weight", shape: [count, temb])
            classLinear1 = nil; classLinear2 = nil
        case .timestep?:
            classTable = nil
            classLinear1 = try r.linear("class_embedding.linear_1", in: ch0, out: temb)
            classLinear2 = try r.linear("class_embedding.linear_2", in: temb, out: temb)
        case .identity?, nil:
            classTable = nil; classLinear1 = nil; classLinear2 = nil
        }
        if let added = c.textTimeEmbedding {
            addLinear1 = try r.linear("add_embedding.linear_1", in: added.inputDim, out: temb)
            addLinear2 = try r.linear("add_embedding.linear_2", in: temb, out: temb)
        } else {
            addLinear1 = nil; addLinear2 = nil
        }
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
        r.releaseConversionBuffers()
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
        var features = try timestepFeatures(steps, dim: c.blockOutChannels[0], flipSinToCos: c.flipSinToCos, freqShift: c.freqShift)
        if let timeCondProj, let cond = conditioning.timestepCondition { features = try features + timeCondProj(cond) }
        var emb = try timeLinear2(try timeLinear1(features, activation: .silu))
        if let classEmbedding = c.classEmbedding, let labels = conditioning.classLabels {
            let perSample = labels.count == 1 ? [Float](repeating: labels[0], count: b) : labels
            emb = try emb + classEmbeddings(perSample, kind: classEmbedding)
        }
        if let added = c.textTimeEmbedding, let textTime = conditioning.textTime, let addLinear1, let addLinear2 {
            emb = try emb + addLinear2(try addLinear1(try textTimeFeatures(textTime, timeEmbedDim: added.timeEmbedDim), activation: .silu))
        }
        let tembAct = emb.silu()

        var h = c.centerInputSample ? sample.scaled(by: 2, adding: -1) : sample
        h = try convIn(h)
        var skips = [h]
        for block in downBlocks {
            h = try block(h, tembAct: tembAct, context: encoderHiddenStates, skips: &skips)
        }
        if let midBlock { h = try midBlock(h, tembAct: tembAct, context: encoderHiddenStates) }
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

    /// `concat([text_embeds, add_time_proj(time_ids.flatten()).reshape(batch, -1)], -1)`.
    private func textTimeFeatures(_ t: UNetConditioning.TextTime, timeEmbedDim: Int) throws -> Tensor {
        let b = t.textEmbeds.shape[0], pooled = t.textEmbeds.shape[1], ids = t.timeIds.shape[1]
        let features = timestepFeatures(t.timeIds.scalars, dim: timeEmbedDim, flipSinToCos: config.flipSinToCos, freqShift: config.freqShift)
        var out = Tensor(uninitializedShape: [b, pooled + ids * timeEmbedDim])
        let width = pooled + ids * timeEmbedDim
        out.withUnsafeMutableBufferPointer { o in
            let text = t.textEmbeds.unsafePointer, time = features.unsafePointer
            for i in 0..<b {
                (o.baseAddress! + i * width).update(from: text + i * pooled, count: pooled)
                (o.baseAddress! + i * width + pooled).update(from: time + i * ids * timeEmbedDim, count: ids * timeEmbedDim)
            }
        }
        return out
    }

    private func classEmbeddings(_ labels: [Float], kind: UNet2DConditionConfig.ClassEmbedding) throws -> Tensor {
        let temb = config.timeEmbeddingDim
        switch kind {
        case .table(let count):
            guard let table = classTable else { throw TensorError.invalidArgument("class embedding table missing") }
            var out = Tensor(uninitializedShape: [labels.count, temb])
            try out.withUnsafeMutableBufferPointer { p in
                for (i, l) in labels.enumerated() {
                    let idx = Int(l)
                    guard Float(idx) == l, idx >= 0, idx < count else {
                        throw TensorError.invalidArgument("class label \(l) outside 0..<\(count)")
                    }
                    (p.baseAddress! + i * temb).update(from: table.unsafePointer + idx * temb, count: temb)
                }
            }
            return out
        case .timestep:
            guard let l1 = classLinear1, let l2 = classLinear2 else { throw TensorError.invalidArgument("class embedding missing") }
            let f = timestepFeatures(labels, dim: config.blockOutChannels[0], flipSinToCos: config.flipSinToCos, freqShift: config.freqShift)
            return try l2(try l1(f, activation: .silu))
        case .identity:
            throw TensorError.invalidArgument("identity class embeddings need embedding vectors, not labels")
        }
    }
}
