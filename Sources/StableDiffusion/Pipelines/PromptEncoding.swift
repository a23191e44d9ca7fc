import DiffusionTensor

/// diffusers' `encode_prompt`: tokenise (padded to 77), run the text encoder, repeat each prompt's
/// embedding `numImagesPerPrompt` times, and with classifier-free guidance put the negative (or empty)
/// prompts' embeddings first: `[negative..., positive...]`.
struct PromptEncoder {
    let tokenizer: CLIPTokenizer
    let textEncoder: CLIPTextModel

    func embeddings(_ prompts: [String], clipSkip: Int?) throws -> Tensor {
        let ids = tokenizer.encode(batch: prompts).map(\.inputIDs)
        return try textEncoder.promptEmbeddings(inputIds: ids, clipSkip: clipSkip)
    }

    /// Returns `[2 * B * n, 77, dim]` with guidance (negative first), else `[B * n, 77, dim]`.
    func encode(prompts: [String], negativePrompts: [String]?, numImagesPerPrompt n: Int,
                classifierFreeGuidance: Bool, clipSkip: Int?) throws -> Tensor {
        let positive = try repeatEach(embeddings(prompts, clipSkip: clipSkip), n)
        guard classifierFreeGuidance else { return positive }
        let negatives: [String]
        switch negativePrompts {
        case nil: negatives = [String](repeating: "", count: prompts.count)
        case let list? where list.count == 1: negatives = [String](repeating: list[0], count: prompts.count)
        case let list? where list.count == prompts.count: negatives = list
        case let list?:
            throw PipelineError.invalidArgument("negative prompt has \(list.count) entries but prompt has \(prompts.count)")
        }
        // diffusers does not apply clip_skip to the negative prompt.
        let negative = try repeatEach(embeddings(negatives, clipSkip: nil), n)
        return try Tensor.concatenate([negative, positive], axis: 0)
    }

    /// Repeats every batch entry `n` times in place (`repeat(1, n, 1).view(B*n, ...)`).
    private func repeatEach(_ t: Tensor, _ n: Int) throws -> Tensor {
        if n == 1 { return t }
        let rows = try (0..<t.shape[0]).map { try t.slice(axis: 0, $0..<($0 + 1)) }
        return try Tensor.concatenate(rows.flatMap { [Tensor](repeating: $0, count: n) }, axis: 0)
    }
}

extension StableDiffusionComponents {
    /// diffusers' `encode_prompt` for `options`: `[negative..., positive...]` with guidance, else the positive ones.
    public func encodePrompt(_ options: GenerationOptions) throws -> Tensor {
        try PromptEncoder(tokenizer: tokenizer, textEncoder: textEncoder).encode(
            prompts: options.prompts, negativePrompts: options.negativePrompts, numImagesPerPrompt: options.numImagesPerPrompt,
            classifierFreeGuidance: options.classifierFreeGuidance, clipSkip: options.clipSkip)
    }
}
