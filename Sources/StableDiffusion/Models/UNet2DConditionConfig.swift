import Foundation

/// The parts of diffusers' `UNet2DConditionModel` config that shape the network, validated.
public struct UNet2DConditionConfig: Sendable, Equatable {
    public enum DownBlock: String, Sendable { case crossAttnDownBlock2D = "CrossAttnDownBlock2D", downBlock2D = "DownBlock2D" }
    public enum UpBlock: String, Sendable { case crossAttnUpBlock2D = "CrossAttnUpBlock2D", upBlock2D = "UpBlock2D" }
    public enum ClassEmbedding: Sendable, Equatable {
        /// `nn.Embedding(num_class_embeds, time_embed_dim)` (the x4 upscaler's noise level).
        case table(count: Int)
        /// Class labels go through the sinusoidal features and a `TimestepEmbedding`.
        case timestep
        /// Class labels are already embeddings of the time-embedding size.
        case identity
    }

    /// SDXL's `addition_embed_type: "text_time"`: the pooled text embedding and the micro-conditioning
    /// time ids (each through sinusoidal features of `timeEmbedDim`) concatenated, through a
    /// `TimestepEmbedding` of input width `inputDim`, added to the time embedding.
    public struct TextTimeEmbedding: Sendable, Equatable {
        public var timeEmbedDim: Int
        public var inputDim: Int
    }

    public var inChannels: Int
    public var outChannels: Int
    public var sampleSize: Int?
    public var blockOutChannels: [Int]
    public var downBlockTypes: [DownBlock]
    public var upBlockTypes: [UpBlock]
    public var layersPerBlock: [Int]
    /// Attention heads per down block (diffusers' legacy meaning of `attention_head_dim`).
    public var attentionHeads: [Int]
    public var transformerLayersPerBlock: [Int]
    public var crossAttentionDim: [Int]
    public var onlyCrossAttention: [Bool]
    public var useLinearProjection: Bool
    public var upcastAttention: Bool
    public var hasMidBlock: Bool
    public var classEmbedding: ClassEmbedding?
    public var flipSinToCos: Bool
    public var freqShift: Float
    public var normNumGroups: Int
    public var normEps: Float
    public var downsamplePadding: Int
    public var scaleShiftTimeEmbedding: Bool
    public var midBlockScaleFactor: Float
    public var centerInputSample: Bool
    public var convInKernel: Int
    public var convOutKernel: Int
    public var timeEmbeddingDim: Int
    public var textTimeEmbedding: TextTimeEmbedding?
    /// `time_cond_proj_dim`: LCM-distilled UNets take the guidance scale as an embedding of this width
    /// (`timestep_cond`), added to the timestep features through `time_embedding.cond_proj`.
    public var timeCondProjDim: Int?

    /// Reads `unet/config.json`; unsupported values are errors naming the key.
    public init(_ c: ConfigReader) throws { try self.init(c, encoderOf: nil) }

    /// Reads a UNet config, or with `encoderOf` a model that is the down half of one (ControlNet: its
    /// config has the same keys for the down and mid blocks and the embeddings, and no up path).
    init(_ c: ConfigReader, encoderOf className: String?) throws {
        c.useDiffusersConventions()
        let expected = className ?? "UNet2DConditionModel"
        if let cls = try c.string("_class_name"), cls != expected {
            throw c.error("_class_name", "expected \(expected), got \(cls)")
        }
        let encoderOnly = className != nil
        inChannels = try c.int("in_channels", default: 4)
        // An encoder has no output convolution: its output width is that of its input.
        outChannels = encoderOnly ? inChannels : try c.int("out_channels", default: 4)
        sampleSize = try c.sampleSize()
        blockOutChannels = try c.intList("block_out_channels", default: [320, 640, 1280, 1280])
        let n = blockOutChannels.count
        guard n > 0, blockOutChannels.allSatisfy({ $0 > 0 }) else { throw c.error("block_out_channels", "must be a non-empty list of positive integers") }
        let downs = try c.stringList("down_block_types",
                                     default: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"])
        let ups = encoderOnly ? [] : try c.stringList("up_block_types", default: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"])
        guard downs.count == n else { throw c.error("down_block_types", "has \(downs.count) entries but block_out_channels has \(n)") }
        guard encoderOnly || ups.count == n else { throw c.error("up_block_types", "has \(ups.count) entries but block_out_channels has \(n)") }
        downBlockTypes = try downs.map { t in
            guard let b = DownBlock(rawValue: t) else { throw c.error("down_block_types", "block type \(t) is not supported (supported: CrossAttnDownBlock2D, DownBlock2D)") }
            return b
        }
        upBlockTypes = try ups.map { t in
            guard let b = UpBlock(rawValue: t) else { throw c.error("up_block_types", "block type \(t) is not supported (supported: CrossAttnUpBlock2D, UpBlock2D)") }
            return b
        }
        layersPerBlock = try c.intPerBlock("layers_per_block", count: n, default: 2)
        // diffusers reads `attention_head_dim` as the number of heads unless `num_attention_heads` is given.
        let headDimAsHeads = try c.intPerBlock("attention_head_dim", count: n, default: 8)
        attentionHeads = try c.intPerBlock("num_attention_heads", count: n) ?? headDimAsHeads
        transformerLayersPerBlock = try c.intPerBlock("transformer_layers_per_block", count: n, default: 1)
        crossAttentionDim = try c.intPerBlock("cross_attention_dim", count: n, default: 1280)
        onlyCrossAttention = try c.boolPerBlock("only_cross_attention", count: n, default: false)
        useLinearProjection = try c.bool("use_linear_projection", default: false)
        upcastAttention = try c.bool("upcast_attention", default: false)  // compute is fp32 throughout
        // The mid block's transformers are never cross-only in diffusers (the option is not passed to them).
        if let midOnlyCross = c.value("mid_block_only_cross_attention"), midOnlyCross != .null {
            guard midOnlyCross.boolValue != nil else { throw c.error("mid_block_only_cross_attention", "expected a boolean") }
        }
        // An explicit null mid_block_type means no mid block at all (diffusers' None).
        if c.isExplicitNull("mid_block_type") { hasMidBlock = false } else {
            let mid = try c.string("mid_block_type", default: "UNetMidBlock2DCrossAttn")
            guard mid == "UNetMidBlock2DCrossAttn" else { throw c.error("mid_block_type", "\(mid) is not supported (supported: UNetMidBlock2DCrossAttn)") }
            hasMidBlock = true
        }
        let classType = try c.string("class_embed_type")
        let numClass = try c.int("num_class_embeds")
        switch classType {
        case nil: classEmbedding = numClass.map { .table(count: $0) }
        case "timestep": classEmbedding = .timestep
        case "identity": classEmbedding = .identity
        case let other?: throw c.error("class_embed_type", "\(other) is not supported (supported: null, timestep, identity)")
        }
        flipSinToCos = try c.bool("flip_sin_to_cos", default: true)
        freqShift = Float(try c.double("freq_shift", default: 0))
        normNumGroups = try c.int("norm_num_groups", default: 32)
        normEps = Float(try c.double("norm_eps", default: 1e-5))
        downsamplePadding = try c.int("downsample_padding", default: 1)
        let shift = try c.string("resnet_time_scale_shift", default: "default")
        guard shift == "default" || shift == "scale_shift" else {
            throw c.error("resnet_time_scale_shift", "\(shift) is not supported (supported: default, scale_shift)")
        }
        scaleShiftTimeEmbedding = shift == "scale_shift"
        midBlockScaleFactor = Float(try c.double("mid_block_scale_factor", default: 1))
        // ControlNetModel has none of these options: its input convolution is 3x3, its time embedding 4x the
        // first block's width.
        centerInputSample = encoderOnly ? false : try c.bool("center_input_sample", default: false)
        convInKernel = encoderOnly ? 3 : try c.int("conv_in_kernel", default: 3)
        convOutKernel = encoderOnly ? 3 : try c.int("conv_out_kernel", default: 3)
        guard convInKernel % 2 == 1 else { throw c.error("conv_in_kernel", "must be odd") }
        guard convOutKernel % 2 == 1 else { throw c.error("conv_out_kernel", "must be odd") }
        timeEmbeddingDim = (encoderOnly ? nil : try c.int("time_embedding_dim")) ?? blockOutChannels[0] * 4

        try c.require("act_fn", oneOf: [.string("silu")])
        try c.require("time_embedding_type", oneOf: [.string("positional")])
        try c.require("dual_cross_attention", oneOf: [.bool(false)])
        switch try c.string("addition_embed_type") {
        case nil: textTimeEmbedding = nil
        case "text_time"?:
            guard let timeDim = try c.int("addition_time_embed_dim"), timeDim > 0, timeDim % 2 == 0 else {
                throw c.error("addition_time_embed_dim", "addition_embed_type text_time needs a positive even addition_time_embed_dim")
            }
            guard let inputDim = try c.int("projection_class_embeddings_input_dim"), inputDim > timeDim else {
                throw c.error("projection_class_embeddings_input_dim", "addition_embed_type text_time needs the add embedding's input width (pooled text width + time ids x addition_time_embed_dim)")
            }
            textTimeEmbedding = TextTimeEmbedding(timeEmbedDim: timeDim, inputDim: inputDim)
        case let other?: throw c.error("addition_embed_type", "\(other) is not supported (supported: null, text_time)")
        }
        try c.require("encoder_hid_dim", oneOf: [])
        try c.require("encoder_hid_dim_type", oneOf: [])
        if encoderOnly {
            timeCondProjDim = nil
        } else if let d = try c.int("time_cond_proj_dim") {
            guard d > 0 else { throw c.error("time_cond_proj_dim", "must be positive, got \(d)") }
            timeCondProjDim = d
        } else {
            timeCondProjDim = nil
        }
        try c.require("timestep_post_act", oneOf: [])
        try c.require("time_embedding_act_fn", oneOf: [])
        try c.require("class_embeddings_concat", oneOf: [.bool(false)])
        try c.require("resnet_skip_time_act", oneOf: [.bool(false)])
        try c.require("resnet_out_scale_factor", oneOf: [.double(1)])
        try c.require("cross_attention_norm", oneOf: [])
        try c.require("attention_type", oneOf: [.string("default")])
        try c.require("reverse_transformer_layers_per_block", oneOf: [])
        if textTimeEmbedding == nil { try c.require("projection_class_embeddings_input_dim", oneOf: []) }
        try c.require("dropout", oneOf: [.double(0)])
        try c.finish(ignoring: ["addition_time_embed_dim", "addition_embed_type_num_heads"])

        try c.requireGroups("norm_num_groups", normNumGroups, divide: blockOutChannels)
        for (i, heads) in attentionHeads.enumerated() where downBlockTypes[i] == .crossAttnDownBlock2D || i == n - 1 {
            guard heads > 0, blockOutChannels[i] % heads == 0 else {
                throw c.error("attention_head_dim", "\(heads) heads do not divide \(blockOutChannels[i]) channels (block \(i))")
            }
        }
    }

    /// Loads `config.json` from a file.
    public static func load(_ url: URL) throws -> UNet2DConditionConfig { try UNet2DConditionConfig(ConfigReader(contentsOf: url)) }
}
