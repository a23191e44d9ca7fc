import Foundation
import DiffusionTensor

/// What to change in a model as it loads: LoRAs merged into the UNet and text encoder, and
/// textual-inversion embeddings added to the tokenizer and text encoder. Applied in
/// `StableDiffusionComponents(directory:…, adapters:)`; the files on disk are never modified.
public struct ModelAdapters: Sendable, Hashable {
    public var loras: [LoRA]
    public var embeddings: [TextualInversion]

    public init(loras: [LoRA] = [], embeddings: [TextualInversion] = []) {
        self.loras = loras
        self.embeddings = embeddings
    }

    public var isEmpty: Bool { loras.isEmpty && embeddings.isEmpty }

    /// `base` (the UNet's or text encoder's weights, diffusers/transformers names) with every LoRA merged
    /// in, for loaders that build models from their own sources (single files, converted checkpoints).
    /// Returns `base` itself when there are no LoRAs.
    public func mergingLoRAs(into base: any TensorSource, for target: LoRATarget) throws -> any TensorSource {
        guard !loras.isEmpty else { return base }
        return try LoRATensorSource(base: base, target: target, files: try loraFiles())
    }

    /// The LoRA files read once (both models take their layers from them).
    func loraFiles() throws -> [(file: LoRAFile, scale: Float)] {
        try loras.map { (try LoRAFile(path: $0.file.path), $0.scale) }
    }

    /// Adds the embeddings, as diffusers' `load_textual_inversion`: returns the tokenizer with the new
    /// tokens (`tok`, `tok_1`, … for a multi-vector embedding, `tok` standing for all of them) and the
    /// text-encoder config and weights with the new rows.
    /// - Parameter part: SDXL's `clip_l` or `clip_g` (see `TextualInversion.load(part:)`), nil for SD.
    func addEmbeddings(tokenizer: CLIPTokenizer, config: CLIPTextConfig, weights: any TensorSource, part: String? = nil)
        throws -> (CLIPTokenizer, CLIPTextConfig, any TensorSource) {
        guard !embeddings.isEmpty else { return (tokenizer, config, weights) }
        var groups: [[String]] = [], vectors: [Tensor] = []
        for e in embeddings {
            let (token, v) = try e.load(part: part)
            let n = v.shape[0]
            let names = [token] + (1..<max(n, 1)).map { "\(token)_\($0)" }
            guard v.shape[1] == config.hiddenSize else {
                throw PipelineError.badModel(path: e.file.path, detail: "embedding for \"\(token)\" has \(v.shape[1]) dimensions; this text encoder needs \(config.hiddenSize) (the embedding was made for another model)")
            }
            if let clash = names.first(where: { name in groups.contains { $0.contains(name) } || tokenizer.tokenID(for: name) != nil }) {
                throw PipelineError.badModel(path: e.file.path, detail: "token \"\(clash)\" is already in the tokenizer's vocabulary; choose another token with FILE:TOKEN")
            }
            groups.append(names)
            vectors.append(v)
        }
        let kept = tokenizer.vocabularySize
        let (newTokenizer, ids) = try tokenizer.adding(embeddingTokens: groups)
        guard ids.first == kept else { throw PipelineError.invalidArgument("tokenizer ids are not contiguous; cannot add embeddings") }
        var newConfig = config
        newConfig.vocabSize = kept + ids.count
        let source = try EmbeddingTableSource(base: weights, keptRows: kept, rows: try Tensor.concatenate(vectors, axis: 0))
        return (newTokenizer, newConfig, source)
    }
}
