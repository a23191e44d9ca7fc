import DiffusionTensor

/// diffusers' `StableDiffusionXLPipeline.encode_prompt`: each prompt through both tokenizers and encoders,
/// the hidden states before the last layer (`hidden_states[-2]`, no final layer norm) of both concatenated
/// on the feature axis, and the pooled, projected output of `text_encoder_2`. Without a negative prompt and
/// with `force_zeros_for_empty_prompt`, the negative embeddings are zeros instead of the empty prompt's.
struct SDXLPromptEncoder: TextConditioner {
    /// nil for a model without the first encoder (the refiner).
    let tokenizer: CLIPTokenizer?
    let textEncoder: CLIPTextModel?
    let tokenizer2: CLIPTokenizer
    let textEncoder2: CLIPTextModel
    let forceZerosForEmptyPrompt: Bool

    func encode(_ o: GenerationOptions) throws -> TextConditioning {
        let count = o.prompts.count, n = o.numImagesPerPrompt
        // With one encoder (the refiner) diffusers pairs the first prompt list with it: prompt_2 is unused.
        let prompts2 = tokenizer == nil ? o.prompts
            : try o.prompts2.map { try PromptLists.broadcast($0, to: count, name: "prompt 2") } ?? o.prompts
        if o.promptSyntax == .a1111 { return try encodeWeighted(o, prompts2: prompts2) }
        let positive = try encodePair(o.prompts, prompts2, clipSkip: o.clipSkip)
        let hidden = try PromptLists.repeatEach(positive.hiddenStates, n)
        let pooled = try PromptLists.repeatEach(positive.pooled!, n)
        guard o.classifierFreeGuidance else { return TextConditioning(hiddenStates: hidden, pooled: pooled) }
        let negative: TextConditioning
        if o.negativePrompts == nil, forceZerosForEmptyPrompt {
            negative = TextConditioning(hiddenStates: Tensor(zeros: hidden.shape), pooled: Tensor(zeros: pooled.shape))
        } else {
            let negatives = try PromptLists.broadcast(o.negativePrompts ?? [""], to: count, name: "negative prompt")
            let negatives2 = tokenizer == nil ? negatives
                : try o.negativePrompts2.map { try PromptLists.broadcast($0, to: count, name: "negative prompt 2") } ?? negatives
            // diffusers takes hidden_states[-2] for the negative prompts whatever clip_skip is.
            let encoded = try encodePair(negatives, negatives2, clipSkip: nil)
            negative = TextConditioning(hiddenStates: try PromptLists.repeatEach(encoded.hiddenStates, n),
                                        pooled: try PromptLists.repeatEach(encoded.pooled!, n))
        }
        return TextConditioning(hiddenStates: try Tensor.concatenate([negative.hiddenStates, hidden], axis: 0),
                                pooled: try Tensor.concatenate([negative.pooled!, pooled], axis: 0))
    }

    /// One batch of prompts: the concatenated hidden states and `text_encoder_2`'s projected pooled output.
    private func encodePair(_ prompts: [String], _ prompts2: [String], clipSkip: Int?) throws -> TextConditioning {
        var parts: [Tensor] = []
        if let tokenizer, let textEncoder {
            let ids = tokenizer.encode(batch: prompts).map(\.inputIDs)
            parts.append(try textEncoder.penultimateHiddenState(inputIds: ids, clipSkip: clipSkip))
        }
        let ids2 = tokenizer2.encode(batch: prompts2).map(\.inputIDs)
        let output = try textEncoder2(inputIds: ids2)
        guard let pooled = output.textEmbeds else {
            throw PipelineError.invalidArgument("text_encoder_2 has no text_projection (SDXL needs CLIPTextModelWithProjection)")
        }
        parts.append(try textEncoder2.penultimateHiddenState(from: output, clipSkip: clipSkip))
        return TextConditioning(hiddenStates: parts.count == 1 ? parts[0] : try Tensor.concatenate(parts, axis: 2), pooled: pooled)
    }

    /// AUTOMATIC1111's syntax on SDXL, as the web UI conditions its two embedders: each encoder reads its
    /// prompt as weighted 75-token chunks (`WeightedPromptEncoder`, every prompt of the call padded to the same
    /// chunk count; a chunk is bos, the tokens, the tokenizer's pad token, eos) from its penultimate layer, the
    /// two are concatenated on the feature axis, and the pooled embedding is `text_encoder_2`'s projection of the
    /// first chunk, unweighted (the web UI's `zs[0].pooled`). `clip_skip` applies to every prompt, as in lpw.
    private func encodeWeighted(_ o: GenerationOptions, prompts2: [String]) throws -> TextConditioning {
        let count = o.prompts.count, n = o.numImagesPerPrompt
        let first = tokenizer.flatMap { t in textEncoder.map { WeightedPromptEncoder(tokenizer: t, textEncoder: $0, penultimate: true) } }
        let second = WeightedPromptEncoder(tokenizer: tokenizer2, textEncoder: textEncoder2, penultimate: true)
        var negatives: [String] = [], negatives2: [String] = []
        let zeroNegative = o.classifierFreeGuidance && o.negativePrompts == nil && forceZerosForEmptyPrompt
        if o.classifierFreeGuidance && !zeroNegative {
            negatives = try PromptLists.broadcast(o.negativePrompts ?? [""], to: count, name: "negative prompt")
            negatives2 = tokenizer == nil ? negatives
                : try o.negativePrompts2.map { try PromptLists.broadcast($0, to: count, name: "negative prompt 2") } ?? negatives
        }
        let pos1 = first.map { w in o.prompts.map(w.tokensAndWeights) } ?? [], neg1 = first.map { w in negatives.map(w.tokensAndWeights) } ?? []
        let pos2 = prompts2.map(second.tokensAndWeights), neg2 = negatives2.map(second.tokensAndWeights)
        let chunks = second.chunkCount((pos1 + neg1 + pos2 + neg2).map(\.ids.count).max() ?? 0)
        func encode(_ p1: [(ids: [Int], weights: [Float])], _ p2: [(ids: [Int], weights: [Float])]) throws -> TextConditioning {
            var parts: [Tensor] = []
            if let first { parts.append(try first.encode(p1, chunks: chunks, clipSkip: o.clipSkip)) }
            parts.append(try second.encode(p2, chunks: chunks, clipSkip: o.clipSkip))
            guard let pooled = try textEncoder2(inputIds: p2.map { second.chunkIDs($0.ids, chunk: 0) }).textEmbeds else {
                throw PipelineError.invalidArgument("text_encoder_2 has no text_projection (SDXL needs CLIPTextModelWithProjection)")
            }
            return TextConditioning(hiddenStates: parts.count == 1 ? parts[0] : try Tensor.concatenate(parts, axis: 2), pooled: pooled)
        }
        let positive = try encode(pos1, pos2)
        let hidden = try PromptLists.repeatEach(positive.hiddenStates, n)
        let pooled = try PromptLists.repeatEach(positive.pooled!, n)
        guard o.classifierFreeGuidance else { return TextConditioning(hiddenStates: hidden, pooled: pooled) }
        let negative = zeroNegative ? TextConditioning(hiddenStates: Tensor(zeros: hidden.shape), pooled: Tensor(zeros: pooled.shape))
            : try { let e = try encode(neg1, neg2)
                    return TextConditioning(hiddenStates: try PromptLists.repeatEach(e.hiddenStates, n), pooled: try PromptLists.repeatEach(e.pooled!, n)) }()
        return TextConditioning(hiddenStates: try Tensor.concatenate([negative.hiddenStates, hidden], axis: 0),
                                pooled: try Tensor.concatenate([negative.pooled!, pooled], axis: 0))
    }
}
