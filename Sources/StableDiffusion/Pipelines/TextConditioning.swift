import DiffusionTensor

/// What a model's text encoder(s) give the UNet for one call, for the whole batch the UNet sees:
/// `[negative..., positive...]` with classifier-free guidance, else the positive prompts only.
public struct TextConditioning: Sendable {
    /// `[batch, tokens, crossAttentionDim]`.
    public var hiddenStates: Tensor
    /// `[batch, projectionDim]`: SDXL's pooled prompt embedding (nil for SD 1.x/2.x).
    public var pooled: Tensor?

    public init(hiddenStates: Tensor, pooled: Tensor? = nil) {
        self.hiddenStates = hiddenStates
        self.pooled = pooled
    }
}

/// The text side of a model family (SD's one encoder, SDXL's two), as diffusers' `encode_prompt`.
protocol TextConditioner {
    func encode(_ options: GenerationOptions) throws -> TextConditioning
}

/// The prompt list rules diffusers' `encode_prompt` applies: one entry for every prompt, or one per prompt.
enum PromptLists {
    static func broadcast(_ list: [String], to count: Int, name: String) throws -> [String] {
        if list.count == count { return list }
        if list.count == 1 { return [String](repeating: list[0], count: count) }
        throw PipelineError.invalidArgument("\(name) has \(list.count) entries but prompt has \(count)")
    }

    /// Repeats every batch entry `n` times in place (`repeat(1, n, 1).view(B*n, ...)`).
    static func repeatEach(_ t: Tensor, _ n: Int) throws -> Tensor {
        if n == 1 { return t }
        let rows = try (0..<t.shape[0]).map { try t.slice(axis: 0, $0..<($0 + 1)) }
        return try Tensor.concatenate(rows.flatMap { [Tensor](repeating: $0, count: n) }, axis: 0)
    }
}
