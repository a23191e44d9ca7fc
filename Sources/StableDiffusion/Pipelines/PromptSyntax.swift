/// How prompt text is read.
public enum PromptSyntax: String, Sendable, CaseIterable {
    /// diffusers' `StableDiffusionPipeline`: the text as is, cut at 77 tokens (diffusers' exact picture).
    case plain
    /// AUTOMATIC1111's emphasis syntax and long prompts, as the diffusers community pipeline
    /// `lpw_stable_diffusion` computes them: `(word)` x1.1, `[word]` /1.1, `(word:1.3)`, `\(` escapes,
    /// `BREAK`; 75-token chunks each encoded separately and concatenated (the UNet attends to all of them).
    case a1111
}
