import Foundation
import DiffusionTensor

/// How BiT pads its convolutions (`BitConfig.global_padding`).
public enum BitPadding: String, Sendable, Equatable {
    /// TF "SAME": static when stride 1 and the kernel is odd, otherwise computed from the input size.
    case same = "SAME"
    /// No padding.
    case valid = "VALID"
    /// `global_padding: null`: torch-style symmetric `((stride - 1) + (kernel - 1)) / 2`.
    case symmetric = "null"
}

/// The BiT ResNet that DPT-Hybrid uses as its stem (transformers' `BitConfig`, `layer_type="bottleneck"`).
public struct BitBackboneConfig: Sendable, Equatable {
    public var numChannels: Int
    public var embeddingSize: Int
    public var hiddenSizes: [Int]
    public var depths: [Int]
    public var globalPadding: BitPadding
    public var numGroups: Int
    public var embeddingDynamicPadding: Bool
    public var outputStride: Int
    public var widthFactor: Int
    /// Indices into `["stem", "stage1", ...]` of the feature maps the backbone returns.
    public var outIndices: [Int]

    /// transformers' `make_div`: rounds channel counts to multiples of 8.
    static func makeDiv(_ value: Double, divisor: Int = 8) -> Int {
        var v = max(divisor, Int(value + Double(divisor) / 2) / divisor * divisor)
        if Double(v) < 0.9 * value { v += divisor }
        return v
    }

    /// Output channels of each stage.
    public var stageChannels: [Int] { zip(depths, hiddenSizes).map { _, h in Self.makeDiv(Double(h * widthFactor)) } }
    /// Channels of each selectable feature map (`stem` first).
    public var featureChannels: [Int] { [embeddingSize] + stageChannels }
    /// Stride of each stage: the first keeps the stem's /4, the others halve; BiT dilates instead once the
    /// total reaches `output_stride`, which this engine does not implement (DPT never gets there).
    func stageStrides(file: String) throws -> [Int] {
        var current = 4
        return try depths.indices.map { i in
            let stride = i == 0 ? 1 : 2
            if current >= outputStride {
                throw ModelConfigError(file: file, key: "backbone_config.output_stride",
                                       reason: "\(outputStride) needs dilated stages, which are not supported")
            }
            current *= stride
            return stride
        }
    }
}

/// `DPTConfig` for `DPTForDepthEstimation` with the hybrid (BiT + ViT) backbone, as in
/// stable-diffusion-2-depth's `depth_estimator/config.json` (transformers 4.x or 5.x).
public struct DPTConfig: Sendable, Equatable {
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var intermediateSize: Int
    public var hiddenAct: Activation
    public var layerNormEps: Float
    public var imageSize: Int
    public var patchSize: Int
    public var numChannels: Int
    public var qkvBias: Bool
    public var backboneOutIndices: [Int]
    public var reassembleFactors: [Double]
    public var neckHiddenSizes: [Int]
    public var fusionHiddenSize: Int
    public var headInIndex: Int
    public var useBatchNormInFusionResidual: Bool
    public var useBiasInFusionResidual: Bool
    public var addProjection: Bool
    public var backboneFeatmapShape: [Int]
    public var neckIgnoreStages: [Int]
    public var backbone: BitBackboneConfig

    /// Keys of transformers' `PretrainedConfig` (and DPT training-only fields) that do not change inference.
    static let ignoredKeys: Set<String> = [
        "architectures", "model_type", "transformers_version", "id2label", "label2id", "num_labels", "problem_type",
        "output_hidden_states", "output_attentions", "return_dict", "dtype", "torch_dtype", "torchscript",
        "use_bfloat16", "pruned_heads", "tie_word_embeddings", "is_encoder_decoder", "is_decoder", "add_cross_attention",
        "cross_attention_hidden_size", "tie_encoder_decoder", "chunk_size_feed_forward", "finetuning_task",
        "tokenizer_class", "prefix", "bos_token_id", "pad_token_id", "eos_token_id", "sep_token_id",
        "decoder_start_token_id", "task_specific_params", "tf_legacy_loss", "max_length", "min_length", "do_sample",
        "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p",
        "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
        "bad_words_ids", "num_return_sequences", "output_scores", "return_dict_in_generate", "forced_bos_token_id",
        "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens",
        "begin_suppress_tokens", "name_or_path",
        // Dropout is off at inference; the auxiliary head, its loss and the pooler are not part of DPTForDepthEstimation.
        "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range", "use_auxiliary_head",
        "auxiliary_loss_weight", "semantic_loss_ignore_index", "semantic_classifier_dropout", "pooler_output_size",
        "pooler_act", "use_pretrained_backbone", "backbone_kwargs",
    ]

    public static func load(from url: URL) throws -> DPTConfig {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ModelConfigError(file: url.path, key: "", reason: "cannot read file")
        }
        return try DPTConfig(jsonData: data, file: url.path)
    }

    public init(jsonData: Data, file: String = "depth_estimator/config.json") throws {
        let r = try ConfigReader(file: file, data: jsonData)
        try r.require("model_type", oneOf: [.string("dpt")])
        guard try r.bool("is_hybrid", default: false) else {
            throw r.error("is_hybrid", "only the hybrid DPT (BiT + ViT, as in stable-diffusion-2-depth) is supported")
        }
        if r.value("backbone") != nil { throw r.error("backbone", "named (timm/AutoBackbone) backbones are not supported") }
        try r.require("use_timm_backbone", oneOf: [.bool(false)])
        try r.require("readout_type", oneOf: [.string("project")])

        hiddenSize = try r.int("hidden_size", default: 768)
        numHiddenLayers = try r.int("num_hidden_layers", default: 12)
        numAttentionHeads = try r.int("num_attention_heads", default: 12)
        intermediateSize = try r.int("intermediate_size", default: 3072)
        let act = try r.string("hidden_act", default: "gelu")
        switch act {
        case "gelu": hiddenAct = .gelu
        case "gelu_new", "gelu_pytorch_tanh": hiddenAct = .geluTanh
        case "quick_gelu": hiddenAct = .quickGelu
        default: throw r.error("hidden_act", "activation \"\(act)\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, quick_gelu)")
        }
        layerNormEps = Float(try r.double("layer_norm_eps", default: 1e-12))
        imageSize = try Self.square(r, "image_size", default: 384)
        patchSize = try Self.square(r, "patch_size", default: 16)
        numChannels = try r.int("num_channels", default: 3)
        qkvBias = try r.bool("qkv_bias", default: true)
        backboneOutIndices = try r.intList("backbone_out_indices") ?? [2, 5, 8, 11]
        reassembleFactors = try r.doubleList("reassemble_factors") ?? [4, 2, 1, 0.5]
        neckHiddenSizes = try r.intList("neck_hidden_sizes") ?? [96, 192, 384, 768]
        fusionHiddenSize = try r.int("fusion_hidden_size", default: 256)
        headInIndex = try r.int("head_in_index", default: -1)
        useBatchNormInFusionResidual = try r.bool("use_batch_norm_in_fusion_residual", default: false)
        useBiasInFusionResidual = try r.bool("use_bias_in_fusion_residual", default: !useBatchNormInFusionResidual)
        addProjection = try r.bool("add_projection", default: false)
        backboneFeatmapShape = try r.intList("backbone_featmap_shape") ?? [1, 1024, 24, 24]
        neckIgnoreStages = try r.intList("neck_ignore_stages") ?? [0, 1]
        var sub: [String: JSONValue] = [:]
        if let v = r.value("backbone_config") {
            guard let dict = v.objectValue else { throw r.error("backbone_config", "expected an object, got \(v)") }
            sub = dict
        }
        do {
            backbone = try Self.bit(ConfigReader(file: file, values: sub), file: file)
        } catch let e as ModelConfigError where !e.key.hasPrefix("backbone_config.") {
            // The nested reader knows keys only by their own name.
            throw ModelConfigError(file: e.file, key: "backbone_config.\(e.key)", reason: e.reason)
        }
        try r.finish(ignoring: Self.ignoredKeys)
        try validate(file: file)
    }

    /// `image_size` / `patch_size` may be an int or a pair; only square ones are supported.
    private static func square(_ r: ConfigReader, _ key: String, default d: Int) throws -> Int {
        guard let v = r.value(key) else { return d }
        if let i = v.intValue { return i }
        if let a = v.arrayValue, a.count == 2, let h = a[0].intValue, let w = a[1].intValue, h == w { return h }
        throw r.error(key, "expected an integer (or a square pair), got \(v)")
    }

    /// The BiT sub-config, with the defaults DPTConfig gives a hybrid model's backbone.
    private static func bit(_ r: ConfigReader, file: String) throws -> BitBackboneConfig {
        func key(_ k: String) -> String { "backbone_config.\(k)" }
        func fail(_ k: String, _ reason: String) -> ModelConfigError { ModelConfigError(file: file, key: key(k), reason: reason) }
        if let t = try r.string("model_type"), t != "bit" { throw fail("model_type", "backbone \"\(t)\" is not supported (bit)") }
        let layerType = try r.string("layer_type", default: "bottleneck")
        guard layerType == "bottleneck" else { throw fail("layer_type", "\"\(layerType)\" is not supported (bottleneck)") }
        let act = try r.string("hidden_act", default: "relu")
        guard act == "relu" else { throw fail("hidden_act", "\"\(act)\" is not supported (relu)") }
        let padding: BitPadding
        if r.isExplicitNull("global_padding") {
            padding = .symmetric
        } else {
            let p = try r.string("global_padding", default: "SAME").uppercased()
            guard let parsed = BitPadding(rawValue: p), parsed != .symmetric else {
                throw fail("global_padding", "\"\(p)\" is not one of SAME, VALID, null")
            }
            padding = parsed
        }
        let depths = try r.intList("depths") ?? [3, 4, 9]
        let hiddenSizes = try r.intList("hidden_sizes") ?? [256, 512, 1024, 2048]
        guard hiddenSizes.count >= depths.count, !depths.isEmpty, depths.allSatisfy({ $0 > 0 }) else {
            throw fail("depths", "needs positive depths and at least as many hidden_sizes (\(depths), \(hiddenSizes))")
        }
        let stageNames = ["stem"] + depths.indices.map { "stage\($0 + 1)" }
        var outIndices: [Int]
        if let idx = try r.intList("out_indices") {
            outIndices = idx
        } else if let names = try r.stringList("out_features") {
            outIndices = try names.map { n in
                guard let i = stageNames.firstIndex(of: n) else { throw fail("out_features", "unknown stage \"\(n)\"") }
                return i
            }
        } else {
            outIndices = [stageNames.count - 1]
        }
        if let names = try r.stringList("out_features"), names.compactMap({ stageNames.firstIndex(of: $0) }) != outIndices {
            throw fail("out_features", "\(names) disagrees with out_indices \(outIndices)")
        }
        outIndices = outIndices.map { $0 < 0 ? $0 + stageNames.count : $0 }
        guard outIndices.count == 3, outIndices.allSatisfy({ stageNames.indices.contains($0) }) else {
            throw fail("out_features", "DPT-Hybrid needs exactly 3 backbone feature maps, got indices \(outIndices)")
        }
        _ = try r.double("drop_path_rate")  // stochastic depth: training only
        _ = r.value("stage_names")          // derived from depths
        let c = BitBackboneConfig(
            numChannels: try r.int("num_channels", default: 3), embeddingSize: try r.int("embedding_size", default: 64),
            hiddenSizes: hiddenSizes, depths: depths, globalPadding: padding, numGroups: try r.int("num_groups", default: 32),
            embeddingDynamicPadding: try r.bool("embedding_dynamic_padding", default: true),
            outputStride: try r.int("output_stride", default: 32), widthFactor: try r.int("width_factor", default: 1),
            outIndices: outIndices)
        _ = try c.stageStrides(file: file)
        try r.finish(ignoring: ignoredKeys)
        return c
    }

    /// Structural checks that transformers would only hit at run time (as shape errors).
    public func validate(file: String = "depth_estimator/config.json") throws {
        func fail(_ key: String, _ reason: String) -> ModelConfigError { ModelConfigError(file: file, key: key, reason: reason) }
        guard hiddenSize > 0, numAttentionHeads > 0, hiddenSize % numAttentionHeads == 0 else {
            throw fail("num_attention_heads", "hidden_size \(hiddenSize) is not divisible into \(numAttentionHeads) heads")
        }
        guard neckHiddenSizes.count == 4, reassembleFactors.count >= 4, backboneOutIndices.count == 4 else {
            throw fail("neck_hidden_sizes", "DPT-Hybrid needs 4 neck stages, 4 reassemble_factors and 4 backbone_out_indices")
        }
        guard neckIgnoreStages == [0, 1] else {
            throw fail("neck_ignore_stages", "DPT-Hybrid takes stages 0 and 1 from the backbone; \(neckIgnoreStages) is not supported")
        }
        guard encoderFeatureLayers.count == 2 else {
            throw fail("backbone_out_indices", "entries 2 and 3 (\(backboneOutIndices.suffix(2))) must name two distinct layers below \(numHiddenLayers)")
        }
        for (i, f) in reassembleFactors.prefix(4).enumerated() where i >= 2 {
            if f > 1, f != f.rounded() { throw fail("reassemble_factors", "upsampling factor \(f) must be an integer") }
            if f <= 0 { throw fail("reassemble_factors", "factor \(f) must be positive") }
        }
        let channels = backbone.featureChannels
        for i in 0..<2 where channels[backbone.outIndices[i]] != neckHiddenSizes[i] {
            throw fail("neck_hidden_sizes", "stage \(i) takes the backbone's \(channels[backbone.outIndices[i]])-channel map, not \(neckHiddenSizes[i])")
        }
        guard backboneFeatmapShape.count == 4, backboneFeatmapShape[1] == channels[backbone.outIndices[2]] else {
            throw fail("backbone_featmap_shape", "channel entry must be the backbone's last feature map (\(channels[backbone.outIndices[2]]))")
        }
        guard patchSize > 0, imageSize % patchSize == 0 else {
            throw fail("patch_size", "image_size \(imageSize) is not a multiple of \(patchSize)")
        }
        guard (-4..<4).contains(headInIndex) else { throw fail("head_in_index", "\(headInIndex) is not a fusion stage") }
        if addProjection, fusionHiddenSize != 256 {
            throw fail("add_projection", "the head projection is fixed at 256 channels; fusion_hidden_size is \(fusionHiddenSize)")
        }
    }

    /// The encoder layers whose outputs feed neck stages 2 and 3, in layer order (transformers filters
    /// `enumerate(hidden_states[1:])` by membership in `backbone_out_indices[2:]`).
    public var encoderFeatureLayers: [Int] {
        (0..<numHiddenLayers).filter { backboneOutIndices.dropFirst(2).contains($0) }
    }
}
