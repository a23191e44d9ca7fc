import Foundation

/// The files a CLIP tokenizer is loaded from. `init(directory:)` finds them the way transformers does:
/// `tokenizer.json` when present, otherwise `vocab.json` + `merges.txt`; `tokenizer_config.json` and
/// `special_tokens_map.json` are optional and decide the special tokens and `model_max_length`.
public struct TokenizerFiles: Sendable, Equatable {
    public var tokenizerJSON: URL?
    public var vocab: URL?
    public var merges: URL?
    public var tokenizerConfig: URL?
    public var specialTokensMap: URL?

    public init(
        tokenizerJSON: URL? = nil, vocab: URL? = nil, merges: URL? = nil,
        tokenizerConfig: URL? = nil, specialTokensMap: URL? = nil
    ) {
        self.tokenizerJSON = tokenizerJSON
        self.vocab = vocab
        self.merges = merges
        self.tokenizerConfig = tokenizerConfig
        self.specialTokensMap = specialTokensMap
    }

    /// Finds the tokenizer files in a folder such as a diffusers model's `tokenizer/`.
    public init(directory: URL) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: directory.path, isDirectory: &isDir), isDir.boolValue else {
            throw TokenizerError.noTokenizerFiles(directory: directory.path)
        }
        func existing(_ name: String) -> URL? {
            let url = directory.appendingPathComponent(name)
            return fm.fileExists(atPath: url.path) ? url : nil
        }
        self.init(
            tokenizerJSON: existing("tokenizer.json"), vocab: existing("vocab.json"), merges: existing("merges.txt"),
            tokenizerConfig: existing("tokenizer_config.json"), specialTokensMap: existing("special_tokens_map.json"))
        if tokenizerJSON == nil {
            // Name the file that is missing: a lone vocab.json or merges.txt is a broken folder.
            switch (vocab, merges) {
            case (nil, nil): throw TokenizerError.noTokenizerFiles(directory: directory.path)
            case (nil, _): throw TokenizerError.missingFile(path: directory.appendingPathComponent("vocab.json").path)
            case (_, nil): throw TokenizerError.missingFile(path: directory.appendingPathComponent("merges.txt").path)
            default: break
            }
        }
    }
}

/// One token matched in the text before BPE (`tokenizers`' added tokens: the special tokens, here).
struct AddedTokenSpec: Equatable {
    var content: String
    /// Matched in the normalized (NFC, lower-cased) text when true, in the raw text when false.
    var normalized: Bool
    var id: Int?
}

/// Everything read from the files, before the tokenizer is assembled.
struct TokenizerDefinition {
    var vocab: [String: Int]
    var merges: [(String, String)]
    var mergesPath: String
    var explicitAddedTokens: [AddedTokenSpec] = []
    /// bos, eos, unk, pad: from special_tokens_map.json, else tokenizer_config.json, else CLIP's defaults.
    var specials: [String: AddedTokenSpec] = [:]
    var modelMaxLength: Int = CLIPTokenizer.defaultModelMaxLength

    static let specialKeys = ["bos_token", "eos_token", "unk_token", "pad_token"]
    static let defaultSpecials = [
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
    ]

    static func load(_ files: TokenizerFiles) throws -> TokenizerDefinition {
        var def: TokenizerDefinition
        if let json = files.tokenizerJSON {
            def = try loadTokenizerJSON(json)
        } else if let vocabURL = files.vocab, let mergesURL = files.merges {
            def = TokenizerDefinition(
                vocab: try loadVocab(vocabURL), merges: try loadMerges(mergesURL), mergesPath: mergesURL.path)
        } else {
            throw TokenizerError.missingFile(path: (files.vocab == nil ? "vocab.json" : "merges.txt"))
        }
        let vocabPath = (files.tokenizerJSON ?? files.vocab)?.path ?? "vocab.json"
        try checkIDs(def.vocab.values, path: vocabPath, what: "vocabulary")
        try checkIDs(def.explicitAddedTokens.compactMap(\.id), path: vocabPath, what: "added token")

        var config: [String: Any] = [:]
        if let url = files.tokenizerConfig {
            config = try jsonObject(url)
            def.explicitAddedTokens += try addedTokensDecoder(config["added_tokens_decoder"], path: url.path)
            try checkIDs(def.explicitAddedTokens.compactMap(\.id), path: url.path, what: "added token")
            if let maxLength = try modelMaxLength(config["model_max_length"], path: url.path) {
                def.modelMaxLength = maxLength
            }
        }
        var map: [String: Any] = [:]
        if let url = files.specialTokensMap { map = try jsonObject(url) }
        for key in specialKeys {
            // Both files are checked; special_tokens_map.json wins, as in transformers (SD 2.x's pad "!" is
            // only there). A null or absent entry falls back to CLIP's default.
            let fromConfig = try specialToken(config[key], key: key, path: files.tokenizerConfig)
            let fromMap = try specialToken(map[key], key: key, path: files.specialTokensMap)
            def.specials[key] = fromMap ?? fromConfig
                ?? defaultSpecials[key].map { AddedTokenSpec(content: $0, normalized: false, id: nil) }
        }
        return def
    }

    /// Token ids index the text encoder's embedding rows: as in `tokenizers` (u32) they are 0...2^31-1 here,
    /// which also keeps "largest id + 1" from overflowing.
    static func checkIDs(_ ids: some Sequence<Int>, path: String, what: String) throws {
        if let bad = ids.first(where: { $0 < 0 || $0 > Int(Int32.max) }) {
            throw TokenizerError.malformedFile(path: path, reason: "\(what) id \(bad) is outside 0...\(Int32.max)")
        }
    }

    // MARK: - Files

    static func readData(_ url: URL) throws -> Data {
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw TokenizerError.missingFile(path: url.path)
        }
        do {
            return try Data(contentsOf: url)
        } catch {
            throw TokenizerError.unreadableFile(path: url.path, reason: "\(error.localizedDescription)")
        }
    }

    static func jsonObject(_ url: URL) throws -> [String: Any] {
        let data = try readData(url)
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw TokenizerError.malformedFile(path: url.path, reason: "not valid JSON")
        }
        guard let object = parsed as? [String: Any] else {
            throw TokenizerError.malformedFile(path: url.path, reason: "expected a JSON object at the top level")
        }
        return object
    }

    static func loadVocab(_ url: URL) throws -> [String: Int] {
        let data = try readData(url)
        do {
            return try JSONDecoder().decode([String: Int].self, from: data)
        } catch {
            throw TokenizerError.malformedFile(path: url.path, reason: "expected a JSON object of token -> integer id")
        }
    }

    static func loadMerges(_ url: URL) throws -> [(String, String)] {
        let data = try readData(url)
        guard let text = String(data: data, encoding: .utf8) else {
            throw TokenizerError.malformedFile(path: url.path, reason: "not UTF-8 text")
        }
        var merges: [(String, String)] = []
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = Substring(rawLine)
            if line.hasSuffix("\r") { line = line.dropLast() }
            // The "#version" header is skipped, as `tokenizers` does; a trailing empty line is harmless.
            if line.hasPrefix("#version") || line.isEmpty { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw TokenizerError.malformedFile(
                    path: url.path, reason: "line \(lineNumber) is not two space-separated tokens")
            }
            merges.append((String(parts[0]), String(parts[1])))
        }
        return merges
    }

    private struct TokenizerJSON: Decodable {
        struct Model: Decodable {
            let type: String?
            let vocab: [String: Int]
            let merges: [Merge]
        }
        /// `"a b"` (older `tokenizers`) or `["a", "b"]` (newer).
        enum Merge: Decodable {
            case string(String)
            case pair([String])
            init(from decoder: Decoder) throws {
                let c = try decoder.singleValueContainer()
                if let s = try? c.decode(String.self) { self = .string(s) } else { self = .pair(try c.decode([String].self)) }
            }
        }
        struct Added: Decodable {
            let id: Int
            let content: String
            let normalized: Bool?
        }
        let model: Model
        let added_tokens: [Added]?
    }

    static func loadTokenizerJSON(_ url: URL) throws -> TokenizerDefinition {
        let data = try readData(url)
        let file: TokenizerJSON
        do {
            file = try JSONDecoder().decode(TokenizerJSON.self, from: data)
        } catch {
            throw TokenizerError.malformedFile(
                path: url.path, reason: "expected a BPE tokenizer with model.vocab and model.merges (\(error))")
        }
        if let type = file.model.type, type != "BPE" {
            throw TokenizerError.malformedFile(path: url.path, reason: "model.type is \(type), a CLIP tokenizer needs BPE")
        }
        var merges: [(String, String)] = []
        merges.reserveCapacity(file.model.merges.count)
        for (k, merge) in file.model.merges.enumerated() {
            let parts: [String]
            switch merge {
            case .string(let s): parts = s.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            case .pair(let p): parts = p
            }
            guard parts.count == 2 else {
                throw TokenizerError.malformedFile(path: url.path, reason: "model.merges[\(k)] is not a pair of tokens")
            }
            merges.append((parts[0], parts[1]))
        }
        var def = TokenizerDefinition(vocab: file.model.vocab, merges: merges, mergesPath: url.path)
        def.explicitAddedTokens = (file.added_tokens ?? []).map {
            AddedTokenSpec(content: $0.content, normalized: $0.normalized ?? true, id: $0.id)
        }
        return def
    }

    // MARK: - Config values

    /// A special token is a string, or an object with "content" (transformers' serialized AddedToken).
    static func specialToken(_ value: Any?, key: String, path: URL?) throws -> AddedTokenSpec? {
        guard let value, !(value is NSNull), let path else { return nil }
        if let s = value as? String {
            // transformers turns a plain-string special token into AddedToken(special=True): not normalized.
            return AddedTokenSpec(content: s, normalized: false, id: nil)
        }
        if let object = value as? [String: Any], let content = object["content"] as? String {
            return AddedTokenSpec(content: content, normalized: (object["normalized"] as? Bool) ?? true, id: nil)
        }
        throw TokenizerError.malformedFile(
            path: path.path, reason: "\(key) must be a string or an object with \"content\"")
    }

    static func addedTokensDecoder(_ value: Any?, path: String) throws -> [AddedTokenSpec] {
        guard let value, !(value is NSNull) else { return [] }
        guard let table = value as? [String: Any] else {
            throw TokenizerError.malformedFile(path: path, reason: "added_tokens_decoder must be an object")
        }
        var out: [AddedTokenSpec] = []
        for (key, entry) in table.sorted(by: { (Int($0.key) ?? 0) < (Int($1.key) ?? 0) }) {
            guard let id = Int(key), let object = entry as? [String: Any], let content = object["content"] as? String
            else {
                throw TokenizerError.malformedFile(
                    path: path, reason: "added_tokens_decoder entry \(key) must map an integer id to {\"content\": ...}")
            }
            out.append(AddedTokenSpec(content: content, normalized: (object["normalized"] as? Bool) ?? true, id: id))
        }
        return out
    }

    /// transformers writes a huge sentinel (1e30) when no length is known; CLIP's context is then 77.
    static func modelMaxLength(_ value: Any?, path: String) throws -> Int? {
        guard let value, !(value is NSNull) else { return nil }
        guard let number = value as? NSNumber, !(value is Bool) else {
            throw TokenizerError.malformedFile(path: path, reason: "model_max_length must be a number")
        }
        let d = number.doubleValue
        if d >= 1e9 { return nil }
        guard d >= 2, d == d.rounded() else {
            throw TokenizerError.malformedFile(path: path, reason: "model_max_length must be an integer >= 2, got \(number)")
        }
        return Int(d)
    }
}
