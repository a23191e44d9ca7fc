import Foundation
import DiffusionTensor

/// diffusers' `encode_prompt`: tokenise (padded to 77), run the text encoder, repeat each prompt's
/// embedding `numImagesPerPrompt` times, and with classifier-free guidance put the negative (or empty)
/// prompts' embeddings first: `[negative..., positive...]`. With `PromptSyntax.a1111` the prompts are
/// encoded by `WeightedPromptEncoder` instead (lpw_stable_diffusion's `_encode_prompt`).
struct PromptEncoder: TextConditioner {
    let tokenizer: CLIPTokenizer
    let textEncoder: CLIPTextModel

    func encode(_ options: GenerationOptions) throws -> TextConditioning {
        TextConditioning(hiddenStates: try encode(
            prompts: options.prompts, negativePrompts: options.negativePrompts, numImagesPerPrompt: options.numImagesPerPrompt,
            classifierFreeGuidance: options.classifierFreeGuidance, clipSkip: options.clipSkip, syntax: options.promptSyntax))
    }

    func embeddings(_ prompts: [String], clipSkip: Int?) throws -> Tensor {
        let ids = tokenizer.encode(batch: prompts).map(\.inputIDs)
        return try textEncoder.promptEmbeddings(inputIds: ids, clipSkip: clipSkip)
    }

    /// Returns `[2 * B * n, tokens, dim]` with guidance (negative first), else `[B * n, tokens, dim]`;
    /// tokens is 77, or a multiple of 77 for long `a1111` prompts.
    func encode(prompts: [String], negativePrompts: [String]?, numImagesPerPrompt n: Int,
                classifierFreeGuidance: Bool, clipSkip: Int?, syntax: PromptSyntax = .plain) throws -> Tensor {
        var negatives: [String] = []
        if classifierFreeGuidance {
            negatives = try PromptLists.broadcast(negativePrompts ?? [""], to: prompts.count, name: "negative prompt")
        }
        let positive: Tensor, negative: Tensor?
        switch syntax {
        case .plain:
            positive = try embeddings(prompts, clipSkip: clipSkip)
            // diffusers does not apply clip_skip to the negative prompt.
            negative = classifierFreeGuidance ? try embeddings(negatives, clipSkip: nil) : nil
        case .a1111:
            // lpw pads every prompt of the call to the same chunk count and applies clip_skip to both.
            let weighted = WeightedPromptEncoder(tokenizer: tokenizer, textEncoder: textEncoder)
            let pos = prompts.map(weighted.tokensAndWeights), neg = negatives.map(weighted.tokensAndWeights)
            let chunks = weighted.chunkCount((pos + neg).map(\.ids.count).max() ?? 0)
            positive = try weighted.encode(pos, chunks: chunks, clipSkip: clipSkip)
            negative = classifierFreeGuidance ? try weighted.encode(neg, chunks: chunks, clipSkip: clipSkip) : nil
        }
        guard let negative else { return try PromptLists.repeatEach(positive, n) }
        return try Tensor.concatenate([PromptLists.repeatEach(negative, n), PromptLists.repeatEach(positive, n)], axis: 0)
    }
}

extension StableDiffusionComponents {
    var promptEncoder: PromptEncoder { PromptEncoder(tokenizer: tokenizer, textEncoder: textEncoder) }

    /// diffusers' `encode_prompt` for `options`: `[negative..., positive...]` with guidance, else the positive ones.
    public func encodePrompt(_ options: GenerationOptions) throws -> Tensor {
        try promptEncoder.encode(
            prompts: options.prompts, negativePrompts: options.negativePrompts, numImagesPerPrompt: options.numImagesPerPrompt,
            classifierFreeGuidance: options.classifierFreeGuidance, clipSkip: options.clipSkip, syntax: options.promptSyntax)
    }

    /// With `PromptSyntax.plain`, a note for each prompt longer than the tokenizer's 77 tokens saying
    /// what is cut (diffusers cuts silently) and how to keep it; empty when nothing is cut.
    public func truncationWarnings(_ options: GenerationOptions) -> [String] {
        guard options.promptSyntax == .plain else { return [] }
        let labelled = options.prompts.map { ("prompt", $0) } + (options.negativePrompts ?? []).map { ("negative prompt", $0) }
        return labelled.compactMap { label, prompt in
            let ids = tokenizer.tokenize(prompt)
            let keep = tokenizer.modelMaxLength - 2
            guard ids.count > keep else { return nil }
            let cut = ids[keep...].compactMap { tokenizer.token(for: $0) }.joined().replacingOccurrences(of: "</w>", with: " ")
            return "\(label) is \(ids.count) tokens; only the first \(keep) are used, this part is cut: \"\(cut.trimmingCharacters(in: .whitespaces))\". Use --prompt-syntax a1111 (PromptSyntax.a1111) to keep long prompts."
        }
    }
}
