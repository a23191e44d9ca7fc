import Foundation

/// diffusers' `AutoencoderTiny` config (TAESD, TAESDXL), validated.
public struct AutoencoderTinyConfig: Sendable, Equatable, LatentAutoencoderConfig {
    public var inChannels: Int
    public var outChannels: Int
    public var latentChannels: Int
    public var encoderBlockOutChannels: [Int]
    public var decoderBlockOutChannels: [Int]
    public var numEncoderBlocks: [Int]
    public var numDecoderBlocks: [Int]
    public var upsamplingScalingFactor: Int
    /// The decoder's input clamp: `tanh(x / m) * m`.
    public var latentMagnitude: Float
    public var scalingFactor: Float

    /// Each encoder level after the first halves the image.
    public var scaleFactor: Int { 1 << (encoderBlockOutChannels.count - 1) }

    public init(_ c: ConfigReader) throws {
        c.useDiffusersConventions()
        if let cls = try c.string("_class_name"), cls != "AutoencoderTiny" {
            throw c.error("_class_name", "expected AutoencoderTiny, got \(cls)")
        }
        inChannels = try c.int("in_channels", default: 3)
        outChannels = try c.int("out_channels", default: 3)
        latentChannels = try c.int("latent_channels", default: 4)
        encoderBlockOutChannels = try c.intList("encoder_block_out_channels", default: [64, 64, 64, 64])
        decoderBlockOutChannels = try c.intList("decoder_block_out_channels", default: [64, 64, 64, 64])
        numEncoderBlocks = try c.intList("num_encoder_blocks", default: [1, 3, 3, 3])
        numDecoderBlocks = try c.intList("num_decoder_blocks", default: [3, 3, 3, 1])
        upsamplingScalingFactor = try c.int("upsampling_scaling_factor", default: 2)
        latentMagnitude = Float(try c.double("latent_magnitude", default: 3))
        scalingFactor = Float(try c.double("scaling_factor", default: 1))
        let n = encoderBlockOutChannels.count
        guard (1...16).contains(n), encoderBlockOutChannels.allSatisfy({ $0 > 0 }) else {
            throw c.error("encoder_block_out_channels", "must list 1 to 16 positive channel counts")
        }
        guard numEncoderBlocks.count == n, numEncoderBlocks.allSatisfy({ $0 >= 0 }) else {
            throw c.error("num_encoder_blocks", "must have one non-negative count per encoder level (\(n))")
        }
        guard decoderBlockOutChannels.count == n, decoderBlockOutChannels.allSatisfy({ $0 > 0 }) else {
            throw c.error("decoder_block_out_channels", "must list \(n) positive channel counts, as the encoder")
        }
        guard numDecoderBlocks.count == n, numDecoderBlocks.allSatisfy({ $0 >= 0 }) else {
            throw c.error("num_decoder_blocks", "must have one non-negative count per decoder level (\(n))")
        }
        guard upsamplingScalingFactor == 2 else { throw c.error("upsampling_scaling_factor", "only 2 is supported, got \(upsamplingScalingFactor)") }
        guard latentMagnitude > 0, latentMagnitude.isFinite else { throw c.error("latent_magnitude", "must be a positive number") }
        guard scalingFactor > 0, scalingFactor.isFinite else { throw c.error("scaling_factor", "must be a positive number") }
        try c.require("act_fn", oneOf: [.string("relu")])
        try c.require("upsample_fn", oneOf: [.string("nearest")])
        try c.require("shift_factor", oneOf: [.double(0), .int(0)])
        // latent_shift only matters to scale_latents/unscale_latents (previews in training scripts);
        // force_upcast only chooses fp32, which this engine always uses; block_out_channels is diffusers'
        // copy of decoder_block_out_channels (for pipelines that read it).
        if let copy = try c.intList("block_out_channels"), copy != decoderBlockOutChannels {
            throw c.error("block_out_channels", "must equal decoder_block_out_channels \(decoderBlockOutChannels), got \(copy)")
        }
        try c.finish(ignoring: ["latent_shift", "force_upcast"])
    }

    public static func load(_ url: URL) throws -> AutoencoderTinyConfig { try AutoencoderTinyConfig(ConfigReader(contentsOf: url)) }
}
