import Foundation

/// The parts of diffusers' `AutoencoderKL` config that shape the network, validated.
public struct AutoencoderKLConfig: Sendable, Equatable {
    public var inChannels: Int
    public var outChannels: Int
    public var latentChannels: Int
    public var blockOutChannels: [Int]
    public var layersPerBlock: Int
    public var normNumGroups: Int
    public var scalingFactor: Float
    public var sampleSize: Int?
    public var useQuantConv: Bool
    public var usePostQuantConv: Bool
    public var midBlockAddAttention: Bool

    /// Pixels per latent along each side: 2^(blocks - 1) (8 for SD, 4 for the x4 upscaler).
    public var scaleFactor: Int { 1 << (blockOutChannels.count - 1) }

    public init(_ c: ConfigReader) throws {
        c.useDiffusersConventions()
        if let cls = try c.string("_class_name"), cls != "AutoencoderKL" {
            throw c.error("_class_name", "expected AutoencoderKL, got \(cls)")
        }
        inChannels = try c.int("in_channels", default: 3)
        outChannels = try c.int("out_channels", default: 3)
        latentChannels = try c.int("latent_channels", default: 4)
        blockOutChannels = try c.intList("block_out_channels", default: [64])
        let n = blockOutChannels.count
        guard n > 0, blockOutChannels.allSatisfy({ $0 > 0 }) else { throw c.error("block_out_channels", "must be a non-empty list of positive integers") }
        // Each block but the last halves the image: 16 blocks (a 2^15 scale factor; real VAEs have 4) keep
        // `scaleFactor` and the image sizes derived from it far from overflow.
        guard n <= 16 else { throw c.error("block_out_channels", "has \(n) blocks; at most 16 are supported") }
        let downs = try c.stringList("down_block_types", default: [String](repeating: "DownEncoderBlock2D", count: n))
        let ups = try c.stringList("up_block_types", default: [String](repeating: "UpDecoderBlock2D", count: n))
        guard downs.count == n else { throw c.error("down_block_types", "has \(downs.count) entries but block_out_channels has \(n)") }
        guard ups.count == n else { throw c.error("up_block_types", "has \(ups.count) entries but block_out_channels has \(n)") }
        if let bad = downs.first(where: { $0 != "DownEncoderBlock2D" }) { throw c.error("down_block_types", "block type \(bad) is not supported (supported: DownEncoderBlock2D)") }
        if let bad = ups.first(where: { $0 != "UpDecoderBlock2D" }) { throw c.error("up_block_types", "block type \(bad) is not supported (supported: UpDecoderBlock2D)") }
        layersPerBlock = try c.int("layers_per_block", default: 1)
        normNumGroups = try c.int("norm_num_groups", default: 32)
        scalingFactor = Float(try c.double("scaling_factor", default: 0.18215))
        sampleSize = try c.sampleSize()
        useQuantConv = try c.bool("use_quant_conv", default: true)
        usePostQuantConv = try c.bool("use_post_quant_conv", default: true)
        midBlockAddAttention = try c.bool("mid_block_add_attention", default: true)
        try c.require("act_fn", oneOf: [.string("silu")])
        try c.require("shift_factor", oneOf: [])
        try c.require("latents_mean", oneOf: [])
        try c.require("latents_std", oneOf: [])
        // `force_upcast` only chooses fp32 for the VAE, which this engine always uses.
        try c.finish(ignoring: ["force_upcast"])
        try c.requireGroups("norm_num_groups", normNumGroups, divide: blockOutChannels)
        guard layersPerBlock >= 1 else { throw c.error("layers_per_block", "must be >= 1") }
    }

    public static func load(_ url: URL) throws -> AutoencoderKLConfig { try AutoencoderKLConfig(ConfigReader(contentsOf: url)) }
}
