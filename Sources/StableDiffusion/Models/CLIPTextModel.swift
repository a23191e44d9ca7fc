import Foundation

/// What `CLIPTextModel` returns, as transformers' `BaseModelOutputWithPooling` with `output_hidden_states=True`.
public struct CLIPTextOutput: Sendable {
    /// `[batch, projectionDim]`: `pooledOutput` through `text_projection` (transformers'
    /// `CLIPTextModelWithProjection.text_embeds`, SDXL's pooled prompt embedding); nil without a projection.
    public var textEmbeds: Tensor? = nil
    /// `[batch, tokens, hidden]`: the last layer's output after the final layer norm (the prompt embeddings).
    public var lastHiddenState: Tensor
    /// `[batch, hidden]`: `lastHiddenState` at each sequence's end-of-text token.
    public var pooledOutput: Tensor
    /// The embeddings output followed by every layer's output (`numHiddenLayers + 1` tensors of
    /// `[batch, tokens, hidden]`, none with the final layer norm), as transformers' `hidden_states`.
    public var hiddenStates: [Tensor]
}

/// transformers' `CLIPTextModel` (the SD text encoder): token + position embeddings, pre-LN transformer
/// layers with causal self-attention, final layer norm. No attention mask is taken: SD pipelines pass
/// none, so padding tokens are attended causally like any other token.
public final class CLIPTextModel: Sendable {
    public let config: CLIPTextConfig
    private let tokenEmbedding: Tensor      // [vocab, hidden]
    private let positionEmbedding: Tensor   // [positions, hidden]
    private let layers: [CLIPEncoderLayer]
    private let finalNorm: LayerNormWeights
    /// `text_projection` (no bias) of `CLIPTextModelWithProjection`.
    private let textProjection: Linear?

    /// Builds the model from `weights`, named as transformers saves them. SD checkpoints (saved by
    /// transformers 4) prefix every name with `text_model.`; transformers 5 saves them without it. Both
    /// are accepted, as transformers' loader does. Loading is strict: any missing, misshapen or unexpected
    /// tensor is an error listing them, except the `embeddings.position_ids` buffer older checkpoints hold.
    /// `precision` applies to the projections and MLPs; embeddings, norms and attention stay fp32.
    /// - Parameter withProjection: build transformers' `CLIPTextModelWithProjection` (a `text_projection.weight`
    ///   of `[projection_dim, hidden]` beside `text_model.*`); nil: as config.json's `architectures` says.
    public init(config: CLIPTextConfig, weights: any TensorSource, precision: ComputePrecision = .fp32, withProjection: Bool? = nil) throws {
        try config.validate()
        self.config = config
        let projected = withProjection ?? config.declaresProjection
        if projected, config.projectionDim == nil {
            throw TensorError.badFile(file: weights.sourceDescription, detail: "CLIPTextModelWithProjection needs projection_dim in its config")
        }
        // Synthetic weights (benchmarks) are made in whatever shape is asked for: nothing to check.
        let synthetic = weights is any SyntheticTensorSource
        let prefix = synthetic ? "" : Self.namePrefix(in: weights)
        if !synthetic { try Self.checkNames(config: config, weights: weights, prefix: prefix, withProjection: projected) }

        let reader = WeightReader(weights, precision: precision)
        func load(_ name: String, _ shape: [Int]) throws -> Tensor { try reader.tensor(prefix + name, shape: shape) }
        let h = config.hiddenSize
        tokenEmbedding = try load("embeddings.token_embedding.weight", [config.vocabSize, h])
        positionEmbedding = try load("embeddings.position_embedding.weight", [config.maxPositionEmbeddings, h])
        layers = try (0..<config.numHiddenLayers).map { i in
            try CLIPEncoderLayer(config: config, reader: reader, prefix: "\(prefix)encoder.layers.\(i).")
        }
        finalNorm = try LayerNormWeights(size: h, eps: Float(config.layerNormEps)) { name, shape in
            try load("final_layer_norm.\(name)", shape)
        }
        textProjection = projected
            ? try Linear(weight: reader.tensor(Self.projectionWeight, shape: [config.projectionDim ?? 0, h]), bias: nil, precision: .fp32)
            : nil
        try reader.requireAllUsed(ignoring: [prefix + Self.positionIdsBuffer])
        reader.finishLoading()
    }

    /// The names and shapes of the model's parameters for `config`, in transformers' `state_dict` order,
    /// without the `text_model.` prefix.
    public static func parameterShapes(config: CLIPTextConfig) -> [(name: String, shape: [Int])] {
        let h = config.hiddenSize, f = config.intermediateSize
        var out: [(name: String, shape: [Int])] = [
            ("embeddings.token_embedding.weight", [config.vocabSize, h]),
            ("embeddings.position_embedding.weight", [config.maxPositionEmbeddings, h]),
        ]
        for i in 0..<max(config.numHiddenLayers, 0) {
            let l = "encoder.layers.\(i)."
            for p in ["k_proj", "v_proj", "q_proj", "out_proj"] {
                out += [(l + "self_attn.\(p).weight", [h, h]), (l + "self_attn.\(p).bias", [h])]
            }
            out += [(l + "layer_norm1.weight", [h]), (l + "layer_norm1.bias", [h]),
                    (l + "mlp.fc1.weight", [f, h]), (l + "mlp.fc1.bias", [f]),
                    (l + "mlp.fc2.weight", [h, f]), (l + "mlp.fc2.bias", [h]),
                    (l + "layer_norm2.weight", [h]), (l + "layer_norm2.bias", [h])]
        }
        out += [("final_layer_norm.weight", [h]), ("final_layer_norm.bias", [h])]
        return out
    }

    static let checkpointPrefix = "text_model."
    /// Outside `text_model.` in every transformers version.
    static let projectionWeight = "text_projection.weight"

    /// Whether this is a `CLIPTextModelWithProjection`.
    public var hasProjection: Bool { textProjection != nil }
    static let positionIdsBuffer = "embeddings.position_ids"

    /// `text_model.` unless the source holds the unprefixed (transformers 5) names.
    private static func namePrefix(in weights: any TensorSource) -> String {
        let probe = "embeddings.token_embedding.weight"
        if weights.shape(of: checkpointPrefix + probe) == nil, weights.shape(of: probe) != nil { return "" }
        return checkpointPrefix
    }

    /// Reports every missing, misshapen and unexpected tensor at once (WeightReader stops at the first).
    private static func checkNames(config: CLIPTextConfig, weights: any TensorSource, prefix: String, withProjection: Bool) throws {
        var expected = parameterShapes(config: config).map { (name: prefix + $0.name, shape: $0.shape) }
        if withProjection { expected.append((projectionWeight, [config.projectionDim ?? 0, config.hiddenSize])) }
        var missing: [String] = [], misshapen: [String] = []
        for (name, shape) in expected {
            guard let actual = weights.shape(of: name) else { missing.append(name); continue }
            if actual != shape { misshapen.append("\(name) is \(actual), expected \(shape)") }
        }
        let known = Set(expected.map(\.name) + [prefix + positionIdsBuffer])
        let unexpected = weights.tensorNames.filter { !known.contains($0) }
        var problems: [String] = []
        func list(_ title: String, _ items: [String]) {
            guard !items.isEmpty else { return }
            problems.append("\(items.count) \(title): \(items.prefix(10).joined(separator: ", "))\(items.count > 10 ? ", ..." : "")")
        }
        list("missing tensor(s)", missing)
        list("tensor(s) with the wrong shape", misshapen)
        list("unexpected tensor(s)", unexpected)
        guard problems.isEmpty else {
            throw TensorError.badFile(file: weights.sourceDescription,
                                      detail: "CLIPTextModel weights do not match the config: " + problems.joined(separator: "; "))
        }
    }

    // MARK: Inference

    /// Runs the encoder on a batch of equal-length token id sequences (at most `maxPositionEmbeddings`).
    public func callAsFunction(inputIds: [[Int]]) throws -> CLIPTextOutput {
        let (lastLayerOutput, states) = try run(inputIds, layerCount: layers.count, keepHiddenStates: true)
        let last = try finalNorm(lastLayerOutput)
        let pooled = try pool(last, inputIds)
        return CLIPTextOutput(textEmbeds: try textProjection?.callAsFunction(pooled), lastHiddenState: last, pooledOutput: pooled, hiddenStates: states)
    }

    public func callAsFunction(inputIds: [[Int32]]) throws -> CLIPTextOutput {
        try callAsFunction(inputIds: inputIds.map { $0.map(Int.init) })
    }

    /// The prompt embeddings diffusers' `encode_prompt` uses: `last_hidden_state` when `clipSkip` is nil,
    /// else `final_layer_norm(hidden_states[-(clipSkip + 1)])`. Layers after the one taken are not run.
    public func promptEmbeddings(inputIds: [[Int]], clipSkip: Int? = nil) throws -> Tensor {
        let skip = try checkedClipSkip(clipSkip ?? 0)
        let (output, _) = try run(inputIds, layerCount: layers.count - skip, keepHiddenStates: false)
        return try finalNorm(output)
    }

    public func promptEmbeddings(inputIds: [[Int32]], clipSkip: Int? = nil) throws -> Tensor {
        try promptEmbeddings(inputIds: inputIds.map { $0.map(Int.init) }, clipSkip: clipSkip)
    }

    /// The `clipSkip` embeddings from an output already computed: `final_layer_norm(hidden_states[-(clipSkip + 1)])`.
    public func promptEmbeddings(from output: CLIPTextOutput, clipSkip: Int? = nil) throws -> Tensor {
        guard let clipSkip else { return output.lastHiddenState }
        let skip = try checkedClipSkip(clipSkip)
        guard output.hiddenStates.count == layers.count + 1 else {
            throw TensorError.invalidArgument("output holds \(output.hiddenStates.count) hidden states, this model makes \(layers.count + 1)")
        }
        return try finalNorm(output.hiddenStates[layers.count - skip])
    }

    /// diffusers' SDXL prompt embedding: `hidden_states[-(clipSkip + 2)]`, the output of an earlier layer
    /// without the final layer norm (the penultimate layer's when `clipSkip` is nil). Later layers are not run.
    public func penultimateHiddenState(inputIds: [[Int]], clipSkip: Int? = nil) throws -> Tensor {
        let skip = try checkedClipSkip((clipSkip ?? 0) + 1)
        return try run(inputIds, layerCount: layers.count - skip, keepHiddenStates: false).0
    }

    /// `hidden_states[-(clipSkip + 2)]` from an output already computed (see `penultimateHiddenState`).
    public func penultimateHiddenState(from output: CLIPTextOutput, clipSkip: Int? = nil) throws -> Tensor {
        let skip = try checkedClipSkip((clipSkip ?? 0) + 1)
        guard output.hiddenStates.count == layers.count + 1 else {
            throw TensorError.invalidArgument("output holds \(output.hiddenStates.count) hidden states, this model makes \(layers.count + 1)")
        }
        return output.hiddenStates[layers.count - skip]
    }

    /// The model's final layer norm (diffusers applies it to the `clipSkip` hidden state).
    public func finalLayerNorm(_ hiddenState: Tensor) throws -> Tensor { try finalNorm(hiddenState) }

    private func checkedClipSkip(_ skip: Int) throws -> Int {
        guard skip >= 0, skip <= layers.count else {
            throw TensorError.invalidArgument("clipSkip \(skip) outside 0...\(layers.count) (the text encoder has \(layers.count) layers)")
        }
        return skip
    }

    /// Embeds the ids and runs the first `layerCount` layers; returns the last output (no final norm) and,
    /// when asked, the embeddings plus every layer's output.
    private func run(_ ids: [[Int]], layerCount: Int, keepHiddenStates: Bool) throws -> (Tensor, [Tensor]) {
        var x = try embed(ids)
        var states = keepHiddenStates ? [x] : []
        for layer in layers.prefix(layerCount) {
            x = try layer(x)
            if keepHiddenStates { states.append(x) }
        }
        return (x, states)
    }

    /// Token embedding rows plus position embedding rows (positions 0..<tokens).
    private func embed(_ ids: [[Int]]) throws -> Tensor {
        let batch = ids.count
        guard let tokens = ids.first?.count, tokens > 0 else {
            throw TensorError.invalidArgument("CLIPTextModel: empty input ids")
        }
        guard tokens <= config.maxPositionEmbeddings else {
            throw TensorError.invalidArgument("CLIPTextModel: \(tokens) tokens exceed max_position_embeddings \(config.maxPositionEmbeddings)")
        }
        for (b, row) in ids.enumerated() {
            guard row.count == tokens else {
                throw TensorError.invalidArgument("CLIPTextModel: sequence \(b) has \(row.count) tokens, sequence 0 has \(tokens)")
            }
            if let bad = row.firstIndex(where: { $0 < 0 || $0 >= config.vocabSize }) {
                throw TensorError.invalidArgument("CLIPTextModel: token id \(row[bad]) at [\(b)][\(bad)] is outside the vocabulary 0..<\(config.vocabSize)")
            }
        }
        let h = config.hiddenSize
        var out = Tensor(uninitializedShape: [batch, tokens, h])
        let table = tokenEmbedding.unsafePointer, positions = positionEmbedding.unsafePointer
        out.withUnsafeMutableBufferPointer { buffer in
            let y = buffer.baseAddress!
            for b in 0..<batch {
                for t in 0..<tokens {
                    let row = y + (b * tokens + t) * h
                    let token = table + ids[b][t] * h, position = positions + t * h
                    for j in 0..<h { row[j] = token[j] + position[j] }
                }
            }
        }
        return out
    }

    /// transformers' pooled output. Configs with `eos_token_id == 2` (all SD 1.x/2.x ones, written before
    /// transformers fixed that id) take the position of the largest id (`<|endoftext|>` is the largest);
    /// others take the first position holding `eos_token_id` (0 when there is none, as torch's argmax).
    private func pool(_ last: Tensor, _ ids: [[Int]]) throws -> Tensor {
        let h = config.hiddenSize, tokens = last.shape[1]
        var out = Tensor(uninitializedShape: [ids.count, h])
        let src = last.unsafePointer
        out.withUnsafeMutableBufferPointer { buffer in
            for (b, row) in ids.enumerated() {
                let position: Int
                if config.eosTokenId == 2 {
                    var best = 0
                    for (i, id) in row.enumerated() where id > row[best] { best = i }
                    position = best
                } else {
                    position = row.firstIndex(of: config.eosTokenId) ?? 0
                }
                (buffer.baseAddress! + b * h).update(from: src + (b * tokens + position) * h, count: h)
            }
        }
        return out
    }
}

/// Layer-norm parameters with their epsilon.
struct LayerNormWeights: Sendable {
    let weight: Tensor, bias: Tensor, eps: Float

    init(size: Int, eps: Float, load: (String, [Int]) throws -> Tensor) throws {
        weight = try load("weight", [size])
        bias = try load("bias", [size])
        self.eps = eps
    }

    func callAsFunction(_ x: Tensor) throws -> Tensor { try x.layerNorm(gamma: weight, beta: bias, eps: eps) }
}

/// One pre-LN transformer layer: `x + attn(ln1(x))`, then `x + fc2(act(fc1(ln2(x))))`.
final class CLIPEncoderLayer: Sendable {
    private let norm1: LayerNormWeights, norm2: LayerNormWeights
    private let qProj: Linear, kProj: Linear, vProj: Linear, outProj: Linear
    private let fc1: Linear, fc2: Linear
    private let heads: Int, scale: Float, activation: Activation

    /// - Parameter reader: in the precision of the projections and MLPs (in bf16 they convert the file's
    ///   values in place, without an fp32 copy); `prefix` ends with the layer's `.`.
    init(config: CLIPTextConfig, reader: WeightReader, prefix: String) throws {
        let h = config.hiddenSize, f = config.intermediateSize
        func load(_ name: String, _ shape: [Int]) throws -> Tensor { try reader.tensor(prefix + name, shape: shape) }
        func linear(_ name: String, _ out: Int, _ inp: Int) throws -> Linear { try reader.linear(prefix + name, in: inp, out: out) }
        let eps = Float(config.layerNormEps)
        norm1 = try LayerNormWeights(size: h, eps: eps) { name, shape in try load("layer_norm1.\(name)", shape) }
        qProj = try linear("self_attn.q_proj", h, h)
        kProj = try linear("self_attn.k_proj", h, h)
        vProj = try linear("self_attn.v_proj", h, h)
        outProj = try linear("self_attn.out_proj", h, h)
        norm2 = try LayerNormWeights(size: h, eps: eps) { name, shape in try load("layer_norm2.\(name)", shape) }
        fc1 = try linear("mlp.fc1", f, h)
        fc2 = try linear("mlp.fc2", h, f)
        heads = config.numAttentionHeads
        // transformers: head_dim ** -0.5, computed in double.
        scale = Float(1 / Double(h / heads).squareRoot())
        activation = config.hiddenAct.activation
    }

    func callAsFunction(_ x: Tensor) throws -> Tensor {
        let a = try norm1(x)
        let attention = try Attention.scaledDotProduct(
            query: qProj(a), key: kProj(a), value: vProj(a), heads: heads, scale: scale, causal: true,
            precision: qProj.precision == .bf16 && Attention.bfloat16Available ? .bf16 : .fp32)
        let y = try outProj(attention, residual: x)
        let m = try norm2(y)
        return try fc2(fc1(m, activation: activation), residual: y)
    }
}
