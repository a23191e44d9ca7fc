import ArgumentParser
import Foundation
import StableDiffusion

/// The LoRA / embedding / prompt-syntax / clip-skip flags of `GenerationArguments`, turned into library values.
extension GenerationArguments {
    /// `--lora` files, then those named by `<lora:…>` tags in the prompt (looked up in `--lora-dir`).
    func adapters() throws -> ModelAdapters {
        let tagged = try LoRAPromptTags.extract(from: prompt, directory: loraDir.map { URL(fileURLWithPath: $0, isDirectory: true) })
        return ModelAdapters(loras: try loras.map(LoRA.init(argument:)) + tagged.loras,
                             embeddings: embeddings.map(TextualInversion.init(argument:)))
    }

    func validateAdapterArguments() throws {
        guard PromptSyntax(rawValue: promptSyntax) != nil else {
            throw ValidationError("--prompt-syntax must be one of \(PromptSyntax.allCases.map(\.rawValue).joined(separator: ", ")), got \(promptSyntax)")
        }
        if let c = clipSkip, c < 0 { throw ValidationError("--clip-skip must be >= 0, got \(c)") }
        try FlagChecks.folder("--lora-dir", loraDir)
    }

    /// Sets the prompt (without `<lora:…>` tags), prompt syntax and clip skip.
    func applyAdapterOptions(_ o: inout GenerationOptions) {
        if let cleaned = try? LoRAPromptTags.extract(from: prompt, directory: loraDir.map { URL(fileURLWithPath: $0) }) {
            o.prompts = [cleaned.prompt]
        }
        o.promptSyntax = PromptSyntax(rawValue: promptSyntax) ?? .plain
        o.clipSkip = clipSkip
    }

    /// Warns on stderr when a plain-syntax prompt is cut at 77 tokens.
    func warnAboutPrompt(_ components: StableDiffusionComponents) {
        for w in components.truncationWarnings(options()) { Console.error("sd: warning: \(w)") }
    }
}
