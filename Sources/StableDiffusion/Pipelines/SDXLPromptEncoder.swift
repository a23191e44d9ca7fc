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
        guard o.promptSyntax == .plain else {
            throw PipelineError.invalidArgument("prompt syntax a1111 is not supported for SDXL models yet (use the plain syntax)")
        }
        let count = o.prompts.count, n = o.numImagesPerPrompt
        // With one encoder (the refiner) diffusers pairs the first prompt list with it: prompt_2 is unused.
        let prompts2 = tokenizer == nil ? o.prompts
            : try o.prompts2.map { try PromptLists.broadcast($0, to: count, name: "prompt 2") } ?? o.prompts
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
}
