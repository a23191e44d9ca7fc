import Foundation
import StableDiffusion

/// The input is split at NUL bytes (which none of these text files hold): one part is tokenizer.json;
/// two are vocab.json and merges.txt; a third is tokenizer_config.json.
enum TokenizerTarget {
    static let prompts = ["a photo of an astronaut riding a horse on mars", "  Ünïcödé, 中文 & emoji 🐴!! <|endoftext|> ", ""]

    static func run(_ data: [UInt8]) throws {
        let parts = data.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false).map(Array.init)
        let folder = try ScratchFile.emptyFolder("tokenizer")
        func put(_ bytes: [UInt8], _ name: String) throws { try Data(bytes).write(to: folder.appendingPathComponent(name)) }
        if parts.count == 1 {
            try put(parts[0], "tokenizer.json")
        } else {
            try put(parts[0], "vocab.json")
            try put(parts[1], "merges.txt")
            if parts.count == 3 { try put(parts[2], "tokenizer_config.json") }
        }
        let tokenizer = try CLIPTokenizer(directory: folder)
        for p in prompts {
            let ids = tokenizer.encode(p, maxLength: 77)
            _ = ids
            for id in tokenizer.tokenize(p) { _ = tokenizer.token(for: id) }
        }
    }
}
