import DiffusionTensor

/// Long, weighted prompts as diffusers' community `lpw_stable_diffusion` encodes them
/// (`get_weighted_text_embeddings` with `no_boseos_middle=False` and no chunk limit):
/// each prompt's tokens (parsed by `PromptAttentionParser`) go in chunks of `modelMaxLength - 2` (75),
/// each chunk wrapped in bos/eos and encoded on its own; the chunk embeddings are concatenated, every
/// token's embedding is multiplied by its weight, and the result is rescaled to its unweighted mean.
/// All prompts of a call (positive and negative) get the same number of chunks, padded with the pad token.
public struct WeightedPromptEncoder: Sendable {
    public let tokenizer: CLIPTokenizer
    public let textEncoder: CLIPTextModel
    /// SDXL's layer: the penultimate hidden state without the final layer norm (AUTOMATIC1111's "penultimate"
    /// for both SDXL embedders); otherwise the last layer's output through it, as SD 1.x/2.x.
    public let penultimate: Bool

    public init(tokenizer: CLIPTokenizer, textEncoder: CLIPTextModel, penultimate: Bool = false) {
        self.tokenizer = tokenizer
        self.textEncoder = textEncoder
        self.penultimate = penultimate
    }

    /// Tokens per chunk between bos and eos (75).
    public var chunkLength: Int { tokenizer.modelMaxLength - 2 }

    /// Token ids and weights of one prompt, without bos/eos; a `BREAK` pads the current chunk with the
    /// pad token as AUTOMATIC1111 does (a chunk already full is not padded; an empty one becomes a chunk of padding).
    public func tokensAndWeights(_ prompt: String) -> (ids: [Int], weights: [Float]) {
        var ids: [Int] = [], weights: [Float] = []
        var inChunk = 0
        for piece in PromptAttentionParser.parse(prompt) {
            switch piece {
            case .chunkBreak:
                let fill = chunkLength - inChunk
                ids += [Int](repeating: tokenizer.padTokenID, count: fill)
                weights += [Float](repeating: 1, count: fill)
                inChunk = 0
            case .text(let text, let weight):
                for id in tokenizer.tokenize(text) {
                    if inChunk == chunkLength { inChunk = 0 }
                    ids.append(id); weights.append(Float(weight)); inChunk += 1
                }
            }
        }
        return (ids, weights)
    }

    /// Chunks needed for `count` tokens (at least one).
    public func chunkCount(_ count: Int) -> Int { max(1, (count + chunkLength - 1) / chunkLength) }

    /// The ids of chunk `c` of a prompt: bos, 75 tokens (pad-filled), eos.
    public func chunkIDs(_ ids: [Int], chunk c: Int) -> [Int] {
        let body = (c * chunkLength..<(c + 1) * chunkLength).map { $0 < ids.count ? ids[$0] : tokenizer.padTokenID }
        return [tokenizer.bosTokenID] + body + [tokenizer.eosTokenID]
    }

    /// One weight per embedding position (`chunks * 77`): 1 for bos/eos/padding, the token's weight elsewhere.
    public func positionWeights(_ weights: [Float], chunks: Int) -> [Float] {
        var w = [Float](repeating: 1, count: chunks * (chunkLength + 2))
        for (k, weight) in weights.prefix(chunks * chunkLength).enumerated() {
            w[(k / chunkLength) * (chunkLength + 2) + 1 + k % chunkLength] = weight
        }
        return w
    }

    /// `[prompts.count, chunks * 77, dim]`: each chunk encoded on its own, concatenated, not yet weighted.
    public func unweighted(_ prompts: [(ids: [Int], weights: [Float])], chunks: Int, clipSkip: Int?) throws -> Tensor {
        let perChunk = try (0..<chunks).map { c in
            let ids = prompts.map { chunkIDs($0.ids, chunk: c) }
            return penultimate ? try textEncoder.penultimateHiddenState(inputIds: ids, clipSkip: clipSkip)
                : try textEncoder.promptEmbeddings(inputIds: ids, clipSkip: clipSkip)
        }
        return try Tensor.concatenate(perChunk, axis: 1)
    }

    /// `[prompts.count, chunks * 77, dim]` weighted embeddings, every prompt padded to `chunks` chunks.
    public func encode(_ prompts: [(ids: [Int], weights: [Float])], chunks: Int, clipSkip: Int?) throws -> Tensor {
        var embeddings = try unweighted(prompts, chunks: chunks, clipSkip: clipSkip)
        let width = embeddings.shape[1], dim = embeddings.shape[2]
        embeddings.withUnsafeMutableBufferPointer { e in
            for (b, p) in prompts.enumerated() {
                let w = positionWeights(p.weights, chunks: chunks)
                let base = b * width * dim
                var before = 0.0, after = 0.0
                for t in 0..<width {
                    for j in 0..<dim {
                        let x = e[base + t * dim + j]
                        before += Double(x)
                        let y = x * w[t]
                        e[base + t * dim + j] = y
                        after += Double(y)
                    }
                }
                // Restore the unweighted mean (lpw: `*= previous_mean / current_mean`, fp32). Embeddings
                // whose mean is near zero make this ratio sensitive to rounding, in lpw as here.
                let n = Double(width * dim)
                let ratio = Float(before / n) / Float(after / n)
                for k in base..<(base + width * dim) { e[k] *= ratio }
            }
        }
        return embeddings
    }
}
