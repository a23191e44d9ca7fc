import Foundation
import DiffusionTensor

/// The VAE's mid block: resnet, single-head spatial self-attention (GroupNorm first, residual), resnet.
final class VAEMidBlock {
    let resnet0: ResnetBlock2D, resnet1: ResnetBlock2D
    let attentionNorm: GroupNorm?
    let attention: AttentionLayer?

    init(_ r: WeightReader, _ p: String, channels ch: Int, groups: Int, addAttention: Bool) throws {
        resnet0 = try ResnetBlock2D(r, "\(p).resnets.0", in: ch, out: ch, tembChannels: nil, groups: groups, eps: 1e-6)
        if addAttention {
            let a = "\(p).attentions.0"
            attentionNorm = try r.groupNorm("\(a).group_norm", channels: ch, groups: groups, eps: 1e-6)
            // Checkpoints saved before diffusers 0.14 name these query/key/value/proj_attn.
            let legacy = !r.contains("\(a).to_q.weight") && r.contains("\(a).query.weight")
            attention = try AttentionLayer(r, a, queryDim: ch, contextDim: nil, heads: 1, headDim: ch, qkvBias: true,
                                           names: legacy ? ("query", "key", "value", "proj_attn") : ("to_q", "to_k", "to_v", "to_out.0"))
        } else {
            attentionNorm = nil
            attention = nil
        }
        resnet1 = try ResnetBlock2D(r, "\(p).resnets.1", in: ch, out: ch, tembChannels: nil, groups: groups, eps: 1e-6)
    }

    func callAsFunction(_ x: Tensor) throws -> Tensor {
        var h = try resnet0(x, tembAct: nil)
        if let attention, let attentionNorm {
            let (b, hh, w, c) = (h.shape[0], h.shape[1], h.shape[2], h.shape[3])
            let tokens = try attentionNorm(h).reshaped([b, hh * w, c])
            h = try attention(tokens, context: nil, residual: h.reshaped([b, hh * w, c])).reshaped([b, hh, w, c])
        }
        return try resnet1(consume h, tembAct: nil)
    }
}

/// The latent distribution the encoder produces (diffusers' `DiagonalGaussianDistribution`).
public struct DiagonalGaussian: Sendable {
    public let mean: Tensor
    /// Log-variance, clamped to [-30, 20] as diffusers does.
    public let logVariance: Tensor

    /// `mean + exp(0.5 * logvar) * noise`, with `noise` drawn by the caller (torch order: NCHW) and given
    /// here in NHWC, the same shape as `mean`.
    public func sample(noise: Tensor) throws -> Tensor {
        guard noise.shape == mean.shape else {
            throw TensorError.shapeMismatch("latent noise must be \(mean.shape), got \(noise.shape)")
        }
        var out = Tensor(uninitializedShape: mean.shape)
        let m = mean.unsafePointer, lv = logVariance.unsafePointer, z = noise.unsafePointer
        out.withUnsafeMutableBufferPointer { p in
            for i in 0..<p.count { p[i] = m[i] + expf(0.5 * lv[i]) * z[i] }
        }
        return out
    }

    /// The distribution's mode (its mean), as `latent_dist.mode()`.
    public var mode: Tensor { mean }
}

/// diffusers' `AutoencoderKL`: encoder to a diagonal Gaussian over latents, decoder back to pixels.
/// Images are NHWC in [-1, 1]; latents NHWC, unscaled (multiply by `config.scalingFactor` for the UNet).
public final class AutoencoderKL: @unchecked Sendable {
    public let config: AutoencoderKLConfig

    let encConvIn: Conv2D
    let encDown: [(resnets: [ResnetBlock2D], downsampler: Conv2D?)]
    let encMid: VAEMidBlock
    let encNormOut: GroupNorm
    let encConvOut: Conv2D
    let quantConv: Linear?
    let postQuantConv: Linear?
    let decConvIn: Conv2D
    let decMid: VAEMidBlock
    let decUp: [(resnets: [ResnetBlock2D], upsampler: Upsampler?)]
    let decNormOut: GroupNorm
    let decConvOut: Conv2D

    /// Builds the VAE and loads its weights strictly. `encoder: false` skips the encoder (text-to-image only
    /// needs the decoder); its weights are then ignored rather than reported as unexpected.
    /// `precision` applies to every convolution and linear layer (see `ComputePrecision`).
    public init(config c: AutoencoderKLConfig, weights: any TensorSource, includeEncoder: Bool = true,
                precision: ComputePrecision = .fp32) throws {
        config = c
        let r = WeightReader(weights, precision: precision)
        let g = c.normNumGroups, n = c.blockOutChannels.count, lat = c.latentChannels
        let top = c.blockOutChannels[n - 1]

        // Encoder (built even when skipped would cost memory; only when asked).
        if includeEncoder {
            encConvIn = try r.conv2d("encoder.conv_in", in: c.inChannels, out: c.blockOutChannels[0], kernel: 3)
            var blocks: [(resnets: [ResnetBlock2D], downsampler: Conv2D?)] = []
            var outC = c.blockOutChannels[0]
            for i in 0..<n {
                let inC = outC
                outC = c.blockOutChannels[i]
                let p = "encoder.down_blocks.\(i)"
                let res = try (0..<c.layersPerBlock).map {
                    try ResnetBlock2D(r, "\(p).resnets.\($0)", in: $0 == 0 ? inC : outC, out: outC, tembChannels: nil, groups: g, eps: 1e-6)
                }
                let down = i == n - 1 ? nil : try makeDownsampler(r, "\(p).downsamplers.0", channels: outC, padding: 0)
                blocks.append((res, down))
            }
            encDown = blocks
            encMid = try VAEMidBlock(r, "encoder.mid_block", channels: top, groups: g, addAttention: c.midBlockAddAttention)
            encNormOut = try r.groupNorm("encoder.conv_norm_out", channels: top, groups: g, eps: 1e-6)
            encConvOut = try r.conv2d("encoder.conv_out", in: top, out: 2 * lat, kernel: 3)
            quantConv = c.useQuantConv ? try r.linear("quant_conv", in: 2 * lat, out: 2 * lat) : nil
        } else {
            // Placeholders are never called: `encode` checks `hasEncoder` first.
            encConvIn = try Conv2D(weight: Tensor(zeros: [1, c.inChannels, 1, 1]), bias: nil)
            encDown = []
            encMid = try VAEMidBlock(WeightReader(AutoencoderKL.emptyMid(top, g)), "m", channels: top, groups: g, addAttention: false)
            encNormOut = GroupNorm(gamma: Tensor(zeros: [top]), beta: Tensor(zeros: [top]), groups: g, eps: 1e-6)
            encConvOut = try Conv2D(weight: Tensor(zeros: [1, top, 1, 1]), bias: nil)
            quantConv = nil
        }
        hasEncoder = includeEncoder

        // Decoder.
        postQuantConv = c.usePostQuantConv ? try r.linear("post_quant_conv", in: lat, out: lat) : nil
        decConvIn = try r.conv2d("decoder.conv_in", in: lat, out: top, kernel: 3)
        decMid = try VAEMidBlock(r, "decoder.mid_block", channels: top, groups: g, addAttention: c.midBlockAddAttention)
        let reversed = Array(c.blockOutChannels.reversed())
        var ups: [(resnets: [ResnetBlock2D], upsampler: Upsampler?)] = []
        var outC = reversed[0]
        for i in 0..<n {
            let prev = outC
            outC = reversed[i]
            let p = "decoder.up_blocks.\(i)"
            let res = try (0..<(c.layersPerBlock + 1)).map {
                try ResnetBlock2D(r, "\(p).resnets.\($0)", in: $0 == 0 ? prev : outC, out: outC, tembChannels: nil, groups: g, eps: 1e-6)
            }
            let up = i == n - 1 ? nil : try Upsampler(r, "\(p).upsamplers.0", channels: outC)
            ups.append((res, up))
        }
        decUp = ups
        decNormOut = try r.groupNorm("decoder.conv_norm_out", channels: c.blockOutChannels[0], groups: g, eps: 1e-6)
        decConvOut = try r.conv2d("decoder.conv_out", in: c.blockOutChannels[0], out: c.outChannels, kernel: 3)
        try r.requireAllUsed(ignoring: includeEncoder ? [] : ["encoder.", "quant_conv."])
        r.finishLoading()
    }

    public let hasEncoder: Bool

    private static func emptyMid(_ ch: Int, _ g: Int) -> TensorDictionary {
        var t: [String: Tensor] = [:]
        for j in 0..<2 {
            for name in ["norm1", "norm2"] {
                t["m.resnets.\(j).\(name).weight"] = Tensor(zeros: [ch]); t["m.resnets.\(j).\(name).bias"] = Tensor(zeros: [ch])
            }
            for name in ["conv1", "conv2"] {
                t["m.resnets.\(j).\(name).weight"] = Tensor(zeros: [ch, ch, 3, 3]); t["m.resnets.\(j).\(name).bias"] = Tensor(zeros: [ch])
            }
        }
        return TensorDictionary(t)
    }

    /// Encodes NHWC images in [-1, 1] to the latent distribution (unscaled latents).
    public func encode(_ images: Tensor) throws -> DiagonalGaussian {
        guard hasEncoder else { throw TensorError.invalidArgument("this AutoencoderKL was loaded without its encoder") }
        guard images.rank == 4, images.shape[3] == config.inChannels else {
            throw TensorError.shapeMismatch("VAE encoder expects NHWC images with \(config.inChannels) channels, got \(images.shape)")
        }
        var h = try encConvIn(images)
        for block in encDown {
            for resnet in block.resnets { h = try resnet(consume h, tembAct: nil) }
            if let down = block.downsampler { h = try down(h) }
        }
        h = try encMid(h)
        h = try encNormOut.then(encConvOut, h, activation: .silu)
        if let quantConv { h = try quantConv(h) }
        let lat = config.latentChannels
        let mean = try h.slice(axis: 3, 0..<lat)
        var logvar = try h.slice(axis: 3, lat..<2 * lat)
        logvar.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] = min(max(p[i], -30), 20) } }
        return DiagonalGaussian(mean: mean, logVariance: logvar)
    }

    /// Decodes NHWC latents (already divided by `scalingFactor`) to NHWC images, nominally in [-1, 1].
    public func decode(_ latents: Tensor) throws -> Tensor {
        guard latents.rank == 4, latents.shape[3] == config.latentChannels else {
            throw TensorError.shapeMismatch("VAE decoder expects NHWC latents with \(config.latentChannels) channels, got \(latents.shape)")
        }
        var h = latents
        if let postQuantConv { h = try postQuantConv(h) }
        h = try decConvIn(h)
        h = try decMid(h)
        for block in decUp {
            for resnet in block.resnets { h = try resnet(consume h, tembAct: nil) }
            if let up = block.upsampler { h = try up(h) }
        }
        return try decNormOut.then(decConvOut, h, activation: .silu)
    }
}
