import ArgumentParser
import Foundation
import StableDiffusion

/// `sd tokenize`: the ids the text encoder would see for a prompt, for checking against transformers.
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print a prompt's padded CLIP token ids (model_max_length, 77 for SD) as a JSON array.")

    @Option(help: "Tokenizer folder: tokenizer.json, or vocab.json + merges.txt, with tokenizer_config.json.")
    var tokenizer: String

    @Option(help: "The prompt to tokenize.")
    var prompt: String

    func run() throws {
        let ids: [Int]
        do {
            let clip = try CLIPTokenizer(directory: URL(fileURLWithPath: tokenizer, isDirectory: true))
            ids = clip.encode(prompt).inputIDs
        } catch {
            FileHandle.standardError.write(Data("sd tokenize: error: \(error)\n".utf8))
            throw ExitCode.failure
        }
        // The same text as Python's json.dumps(list_of_ints).
        print("[" + ids.map(String.init).joined(separator: ", ") + "]")
    }
}
