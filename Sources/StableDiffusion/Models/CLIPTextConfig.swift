import Foundation

/// The feed-forward activation of a CLIP text encoder (`hidden_act`).
public enum CLIPHiddenActivation: String, Codable, Sendable, CaseIterable {
    /// OpenAI CLIP (SD 1.x): `x * sigmoid(1.702 x)`.
    case quickGelu = "quick_gelu"
    /// OpenCLIP ViT-H (SD 2.x): exact erf GELU.
    case gelu = "gelu"

    var activation: Activation {
        switch self {
        case .quickGelu: return .quickGelu
        case .gelu: return .gelu
        }
    }
}

/// `text_encoder/config.json` of a diffusers model: transformers' `CLIPTextConfig`.
///
/// Absent keys take transformers' defaults (that is what transformers itself does, so the network is
/// the same); present keys with unsupported values are errors naming the file and key.
/// Dropout and initializer keys do not change inference and are not modelled; `projection_dim` sizes the
/// `text_projection` of `CLIPTextModelWithProjection` (ignored for a plain `CLIPTextModel`).
public struct CLIPTextConfig: Codable, Sendable, Equatable {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var maxPositionEmbeddings: Int
    public var hiddenAct: CLIPHiddenActivation
    public var layerNormEps: Double
    public var bosTokenId: Int
    public var eosTokenId: Int
    public var padTokenId: Int
    public var architectures: [String]?
    public var modelType: String?
    /// The width of `text_projection` (`CLIPTextModelWithProjection`, SDXL's second encoder).
    public var projectionDim: Int?

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size"
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case maxPositionEmbeddings = "max_position_embeddings"
        case hiddenAct = "hidden_act"
        case layerNormEps = "layer_norm_eps"
        case bosTokenId = "bos_token_id"
        case eosTokenId = "eos_token_id"
        case padTokenId = "pad_token_id"
        case architectures
        case modelType = "model_type"
        case projectionDim = "projection_dim"
    }

    /// The architecture name this loader implements (`architectures` in config.json).
    public static let architecture = "CLIPTextModel"
    /// The same encoder with a `text_projection` of the pooled output (SDXL's `text_encoder_2`).
    public static let architectureWithProjection = "CLIPTextModelWithProjection"
    public static let modelTypeName = "clip_text_model"

    /// Defaults are transformers' `CLIPTextConfig()` defaults.
    public init(
        vocabSize: Int = 49408, hiddenSize: Int = 512, intermediateSize: Int = 2048, numHiddenLayers: Int = 12,
        numAttentionHeads: Int = 8, maxPositionEmbeddings: Int = 77, hiddenAct: CLIPHiddenActivation = .quickGelu,
        layerNormEps: Double = 1e-5, bosTokenId: Int = 49406, eosTokenId: Int = 49407, padTokenId: Int = 1,
        architectures: [String]? = [CLIPTextConfig.architecture], modelType: String? = CLIPTextConfig.modelTypeName,
        projectionDim: Int? = nil
    ) {
        self.projectionDim = projectionDim
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.hiddenAct = hiddenAct
        self.layerNormEps = layerNormEps
        self.bosTokenId = bosTokenId
        self.eosTokenId = eosTokenId
        self.padTokenId = padTokenId
        self.architectures = architectures
        self.modelType = modelType
    }

    public init(from decoder: any Decoder) throws {
        let d = CLIPTextConfig()
        let c = try decoder.container(keyedBy: CodingKeys.self)
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? d.vocabSize
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? d.hiddenSize
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? d.intermediateSize
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? d.numHiddenLayers
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? d.numAttentionHeads
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? d.maxPositionEmbeddings
        if let act = try c.decodeIfPresent(String.self, forKey: .hiddenAct) {
            guard let parsed = CLIPHiddenActivation(rawValue: act) else {
                let supported = CLIPHiddenActivation.allCases.map(\.rawValue).joined(separator: ", ")
                throw DecodingError.dataCorruptedError(
                    forKey: .hiddenAct, in: c, debugDescription: "unsupported value \"\(act)\" (supported: \(supported))")
            }
            hiddenAct = parsed
        } else {
            hiddenAct = d.hiddenAct
        }
        layerNormEps = try c.decodeIfPresent(Double.self, forKey: .layerNormEps) ?? d.layerNormEps
        // Token ids may be null in some configs; they only select the pooled-output rule.
        bosTokenId = (try? c.decodeIfPresent(Int.self, forKey: .bosTokenId)) ?? d.bosTokenId
        eosTokenId = (try? c.decodeIfPresent(Int.self, forKey: .eosTokenId)) ?? d.eosTokenId
        padTokenId = (try? c.decodeIfPresent(Int.self, forKey: .padTokenId)) ?? d.padTokenId
        architectures = try c.decodeIfPresent([String].self, forKey: .architectures)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType)
        projectionDim = try c.decodeIfPresent(Int.self, forKey: .projectionDim)
    }

    /// Whether config.json names `CLIPTextModelWithProjection`.
    public var declaresProjection: Bool { architectures?.contains(Self.architectureWithProjection) ?? false }

    /// Parses and validates config JSON; `file` names it in errors.
    public init(jsonData: Data, file: String = "text_encoder/config.json") throws {
        do {
            self = try JSONDecoder().decode(CLIPTextConfig.self, from: jsonData)
        } catch let error as DecodingError {
            throw TensorError.badFile(file: file, detail: Self.describe(error))
        } catch {
            throw TensorError.badFile(file: file, detail: "malformed JSON: \(error)")
        }
        try validate(file: file)
    }

    /// Reads `config.json` (or the `config.json` inside a directory).
    public static func load(from url: URL) throws -> CLIPTextConfig {
        var isDirectory: ObjCBool = false
        let file = FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && isDirectory.boolValue
            ? url.appendingPathComponent("config.json") : url
        let data: Data
        do {
            data = try Data(contentsOf: file)
        } catch {
            throw TensorError.badFile(file: file.path, detail: "cannot read: \(error.localizedDescription)")
        }
        return try CLIPTextConfig(jsonData: data, file: file.path)
    }

    /// Checks that the values describe a network this implementation builds.
    public func validate(file: String = "text_encoder/config.json") throws {
        func bad(_ key: CodingKeys, _ why: String) -> TensorError {
            .badFile(file: file, detail: "key \(key.rawValue): \(why)")
        }
        if let architectures, !architectures.contains(Self.architecture), !architectures.contains(Self.architectureWithProjection) {
            throw bad(.architectures, "unsupported architecture \(architectures) (supported: [\"\(Self.architecture)\"], [\"\(Self.architectureWithProjection)\"])")
        }
        if let projectionDim, projectionDim <= 0 { throw bad(.projectionDim, "must be positive, got \(projectionDim)") }
        if let modelType, modelType != Self.modelTypeName {
            throw bad(.modelType, "unsupported model type \"\(modelType)\" (supported: \"\(Self.modelTypeName)\")")
        }
        for (key, value) in [(CodingKeys.vocabSize, vocabSize), (.hiddenSize, hiddenSize), (.intermediateSize, intermediateSize),
                             (.numHiddenLayers, numHiddenLayers), (.numAttentionHeads, numAttentionHeads),
                             (.maxPositionEmbeddings, maxPositionEmbeddings)] where value <= 0 {
            throw bad(key, "must be positive, got \(value)")
        }
        guard hiddenSize % numAttentionHeads == 0 else {
            throw bad(.numAttentionHeads, "hidden_size \(hiddenSize) is not divisible by \(numAttentionHeads) heads")
        }
        guard layerNormEps > 0, layerNormEps.isFinite else { throw bad(.layerNormEps, "must be positive, got \(layerNormEps)") }
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
            return keys.isEmpty ? "" : "key \(keys): "
        }
        switch error {
        case .dataCorrupted(let c): return "\(path(c))\(c.debugDescription)"
        case .typeMismatch(let type, let c): return "\(path(c))expected \(type)"
        case .valueNotFound(let type, let c): return "\(path(c))expected \(type), got null"
        case .keyNotFound(let key, let c): return "\(path(c))missing key \(key.stringValue)"
        @unknown default: return "\(error)"
        }
    }
}
