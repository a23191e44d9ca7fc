import DiffusionTensor

/// `CrossAttnDownBlock2D` / `DownBlock2D`: resnets (each followed by a transformer when cross-attention
/// is on), then an optional stride-2 downsampler. Every intermediate output is kept for the skip path.
final class UNetDownBlock {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]
    let downsampler: Conv2D?

    init(_ r: WeightReader, _ p: String, config c: UNet2DConditionConfig, index i: Int, in inC: Int, out outC: Int, isFinal: Bool) throws {
        let withAttention = c.downBlockTypes[i] == .crossAttnDownBlock2D
        var res: [ResnetBlock2D] = [], att: [Transformer2DModel] = []
        for j in 0..<c.layersPerBlock[i] {
            res.append(try ResnetBlock2D(r, "\(p).resnets.\(j)", in: j == 0 ? inC : outC, out: outC, tembChannels: c.timeEmbeddingDim,
                                         groups: c.normNumGroups, eps: c.normEps, scaleShift: c.scaleShiftTimeEmbedding))
            if withAttention {
                att.append(try Transformer2DModel(r, "\(p).attentions.\(j)", channels: outC, heads: c.attentionHeads[i],
                                                  layers: c.transformerLayersPerBlock[i], crossAttentionDim: c.crossAttentionDim[i],
                                                  groups: c.normNumGroups, onlyCrossAttention: c.onlyCrossAttention[i]))
            }
        }
        resnets = res
        attentions = att
        downsampler = isFinal ? nil : try makeDownsampler(r, "\(p).downsamplers.0", channels: outC, padding: c.downsamplePadding)
    }

    func callAsFunction(_ x: Tensor, tembAct: Tensor, context: Tensor, skips: inout [Tensor]) throws -> Tensor {
        var h = x
        for (j, resnet) in resnets.enumerated() {
            h = try resnet(h, tembAct: tembAct)
            if !attentions.isEmpty { h = try attentions[j](h, context: context) }
            skips.append(h)
        }
        if let downsampler {
            h = try downsampler(h)
            skips.append(h)
        }
        return h
    }
}

/// `UNetMidBlock2DCrossAttn`: resnet, then (transformer, resnet) pairs.
final class UNetMidBlock {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]

    init(_ r: WeightReader, _ p: String, config c: UNet2DConditionConfig) throws {
        let ch = c.blockOutChannels[c.blockOutChannels.count - 1]
        let last = c.blockOutChannels.count - 1
        func resnet(_ j: Int) throws -> ResnetBlock2D {
            try ResnetBlock2D(r, "\(p).resnets.\(j)", in: ch, out: ch, tembChannels: c.timeEmbeddingDim, groups: c.normNumGroups,
                              eps: c.normEps, outputScaleFactor: c.midBlockScaleFactor, scaleShift: c.scaleShiftTimeEmbedding)
        }
        resnets = [try resnet(0), try resnet(1)]
        attentions = [try Transformer2DModel(r, "\(p).attentions.0", channels: ch, heads: c.attentionHeads[last],
                                             layers: c.transformerLayersPerBlock[last], crossAttentionDim: c.crossAttentionDim[last],
                                             groups: c.normNumGroups, onlyCrossAttention: false)]
    }

    func callAsFunction(_ x: Tensor, tembAct: Tensor, context: Tensor) throws -> Tensor {
        var h = try resnets[0](x, tembAct: tembAct)
        h = try attentions[0](h, context: context)
        return try resnets[1](h, tembAct: tembAct)
    }
}

/// `CrossAttnUpBlock2D` / `UpBlock2D`: each resnet takes the running features concatenated (on channels)
/// with the matching skip from the down path; optional transformer after each; optional upsampler.
final class UNetUpBlock {
    let resnets: [ResnetBlock2D]
    let attentions: [Transformer2DModel]
    let upsampler: Upsampler?

    /// - Parameters: `reversedIndex` indexes the per-block config lists in up order.
    init(_ r: WeightReader, _ p: String, config c: UNet2DConditionConfig, reversedIndex i: Int,
         prevOut: Int, out outC: Int, skipIn: Int, isFinal: Bool) throws {
        let n = c.blockOutChannels.count
        let cfg = n - 1 - i  // the matching down block's index in config lists
        let withAttention = c.upBlockTypes[i] == .crossAttnUpBlock2D
        let layers = c.layersPerBlock[cfg] + 1
        var res: [ResnetBlock2D] = [], att: [Transformer2DModel] = []
        for j in 0..<layers {
            let skipC = j == layers - 1 ? skipIn : outC
            let resIn = j == 0 ? prevOut : outC
            res.append(try ResnetBlock2D(r, "\(p).resnets.\(j)", in: resIn + skipC, out: outC, tembChannels: c.timeEmbeddingDim,
                                         groups: c.normNumGroups, eps: c.normEps, scaleShift: c.scaleShiftTimeEmbedding))
            if withAttention {
                att.append(try Transformer2DModel(r, "\(p).attentions.\(j)", channels: outC, heads: c.attentionHeads[cfg],
                                                  layers: c.transformerLayersPerBlock[cfg], crossAttentionDim: c.crossAttentionDim[cfg],
                                                  groups: c.normNumGroups, onlyCrossAttention: c.onlyCrossAttention[cfg]))
            }
        }
        resnets = res
        attentions = att
        upsampler = isFinal ? nil : try Upsampler(r, "\(p).upsamplers.0", channels: outC)
    }

    func callAsFunction(_ x: Tensor, tembAct: Tensor, context: Tensor, skips: inout [Tensor], upsampleSize: (Int, Int)?) throws -> Tensor {
        var h = x
        for (j, resnet) in resnets.enumerated() {
            guard let skip = skips.popLast() else { throw TensorError.invalidArgument("UNet skip connections exhausted") }
            h = try resnet(try Tensor.concatenate([h, skip], axis: 3), tembAct: tembAct)
            if !attentions.isEmpty { h = try attentions[j](h, context: context) }
        }
        if let upsampler { h = try upsampler(h, size: upsampleSize) }
        return h
    }
}
