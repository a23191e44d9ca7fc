import Foundation

/// diffusers' `ControlNetModel` config: the down half of a UNet (the same keys, read by
/// `UNet2DConditionConfig`) plus the control image's embedding network.
public struct ControlNetConfig: Sendable, Equatable {
    /// The down blocks, mid block and embeddings, as the matching UNet's (no up path).
    public var encoder: UNet2DConditionConfig
    /// Channels of the control image (3: RGB).
    public var conditioningChannels: Int
    /// `conditioning_embedding_out_channels`: the widths of the control image's embedding convolutions.
    public var conditioningEmbeddingOutChannels: [Int]
    /// `controlnet_conditioning_channel_order`: "bgr" models get the control image's channels reversed.
    public var reversesChannels: Bool
    /// `global_pool_conditions` (shuffle models): residuals averaged over space, and guess mode always on.
    public var globalPoolConditions: Bool

    /// Reads `config.json`; unsupported values are errors naming the key.
    public init(_ c: ConfigReader) throws {
        c.useDiffusersConventions()
        conditioningChannels = try c.int("conditioning_channels", default: 3)
        guard conditioningChannels > 0 else { throw c.error("conditioning_channels", "must be positive, got \(conditioningChannels)") }
        conditioningEmbeddingOutChannels = try c.intList("conditioning_embedding_out_channels", default: [16, 32, 96, 256])
        guard !conditioningEmbeddingOutChannels.isEmpty, conditioningEmbeddingOutChannels.allSatisfy({ $0 > 0 }) else {
            throw c.error("conditioning_embedding_out_channels", "must be a non-empty list of positive integers")
        }
        let order = try c.string("controlnet_conditioning_channel_order", default: "rgb")
        guard order == "rgb" || order == "bgr" else {
            throw c.error("controlnet_conditioning_channel_order", "\(order) is not supported (supported: rgb, bgr)")
        }
        reversesChannels = order == "bgr"
        globalPoolConditions = try c.bool("global_pool_conditions", default: false)
        encoder = try UNet2DConditionConfig(c, encoderOf: "ControlNetModel")
    }

    /// Loads `config.json` from a file.
    public static func load(_ url: URL) throws -> ControlNetConfig { try ControlNetConfig(ConfigReader(contentsOf: url)) }

    /// How many times the control image is halved on its way to the latent size (one stride-2 convolution
    /// per step of `conditioning_embedding_out_channels`).
    public var controlImageScaleFactor: Int { 1 << (conditioningEmbeddingOutChannels.count - 1) }
}
