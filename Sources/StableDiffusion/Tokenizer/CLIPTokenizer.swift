import Foundation

/// The token ids of one prompt, as `tokenizer(prompt, padding="max_length", truncation=True)` returns them.
public struct TokenizedPrompt: Sendable, Equatable {
    /// bos, the prompt's tokens, eos, then pad ids up to the requested length (when padding).
    public let inputIDs: [Int]
    /// 1 for bos, prompt tokens and eos; 0 for padding.
    public let attentionMask: [Int]
    /// Number of real tokens (bos + prompt + eos) in `inputIDs`.
    public let length: Int
    /// bos + prompt + eos before truncation: larger than `length` when the prompt was cut.
    public let untruncatedLength: Int

    /// `inputIDs` without the padding.
    public var unpaddedIDs: [Int] { Array(inputIDs.prefix(length)) }
    public var wasTruncated: Bool { untruncatedLength > length }
}

/// Hugging Face transformers' `CLIPTokenizer` (transformers 5, a `tokenizers`-backed tokenizer), token for token.
///
/// Steps, as `tokenizers` runs them: special tokens are matched first (on the raw text, or on the
/// normalized text for tokens marked `normalized`); the rest is NFC-normalized and lower-cased, split by
/// CLIP's regex, byte-level encoded and BPE-merged with `</w>` word ends; bos/eos wrap the result.
///
/// Like transformers 5, a special token that appears in the prompt becomes that token: with SD 2.x's
/// pad token `!`, "wow!" gives `wow</w>` then id 0 (`!`), not `!</w>` (id 256) as transformers 4 did.
public struct CLIPTokenizer: Sendable {
    /// CLIP's text context: used when tokenizer_config.json gives no `model_max_length`.
    public static let defaultModelMaxLength = 77

    public let modelMaxLength: Int
    public let bosToken: String
    public let eosToken: String
    public let padToken: String
    public let unkToken: String
    public let bosTokenID: Int
    public let eosTokenID: Int
    public let padTokenID: Int
    public let unkTokenID: Int

    private let bpe: BytePairEncoding
    /// Matched in the raw text, then in the normalized text; longest first for leftmost-longest matching.
    private let rawAddedTokens: [(scalars: [Unicode.Scalar], id: Int)]
    /// Mutable (internally) so textual-inversion tokens can be added to a copy (TokenizerAddedTokens.swift).
    var normalizedAddedTokens: [(scalars: [Unicode.Scalar], id: Int)]
    var idToToken: [Int: String]
    /// Multi-vector textual-inversion tokens: the first token's id stands for all its vectors' ids.
    var expansions: [Int: [Int]] = [:]

    /// Loads the tokenizer in a folder (e.g. a diffusers model's `tokenizer/`).
    public init(directory: URL) throws {
        try self.init(files: TokenizerFiles(directory: directory))
    }

    public init(files: TokenizerFiles) throws {
        let def = try TokenizerDefinition.load(files)
        var vocab = def.vocab
        var idToToken: [Int: String] = [:]
        idToToken.reserveCapacity(vocab.count)
        for (token, id) in vocab { idToToken[id] = token }

        // Added tokens: those listed in the files keep their flags; a special token not listed is added
        // with its own flags, the last of bos, eos, unk, pad winning for a shared content (transformers'
        // order: SD 1.x's plain-string pad "<|endoftext|>" makes that token raw-matched).
        var added: [AddedTokenSpec] = def.explicitAddedTokens
        var implied: [AddedTokenSpec] = []
        for key in TokenizerDefinition.specialKeys {
            guard let spec = def.specials[key], !added.contains(where: { $0.content == spec.content }) else { continue }
            if let k = implied.firstIndex(where: { $0.content == spec.content }) {
                implied[k] = spec
            } else {
                implied.append(spec)
            }
        }
        added += implied
        var nextID = (idToToken.keys.max() ?? -1) + 1
        var raw: [(scalars: [Unicode.Scalar], id: Int)] = []
        var normalized: [(scalars: [Unicode.Scalar], id: Int)] = []
        var seen = Set<String>()
        for spec in added where !spec.content.isEmpty && !seen.contains(spec.content) {
            seen.insert(spec.content)
            let id: Int
            if let inVocab = vocab[spec.content] {
                id = inVocab
            } else if let given = spec.id {
                id = given
            } else {
                id = nextID
            }
            nextID = max(nextID, id + 1)
            vocab[spec.content] = id
            idToToken[id] = spec.content
            if spec.normalized {
                normalized.append((Array(spec.content.unicodeScalars), id))
            } else {
                raw.append((Array(spec.content.unicodeScalars), id))
            }
        }
        rawAddedTokens = raw.sorted { $0.scalars.count > $1.scalars.count }
        normalizedAddedTokens = normalized.sorted { $0.scalars.count > $1.scalars.count }

        func special(_ key: String) -> (String, Int) {
            // Every special token was just added to `vocab`, so the lookup cannot fail.
            let content = def.specials[key]?.content ?? TokenizerDefinition.defaultSpecials[key] ?? ""
            return (content, vocab[content] ?? 0)
        }
        (bosToken, bosTokenID) = special("bos_token")
        (eosToken, eosTokenID) = special("eos_token")
        (padToken, padTokenID) = special("pad_token")
        (unkToken, unkTokenID) = special("unk_token")
        modelMaxLength = def.modelMaxLength
        self.idToToken = idToToken
        bpe = try BytePairEncoding(
            vocab: def.vocab, mergeList: def.merges, unkToken: unkToken, mergesPath: def.mergesPath)
    }

    /// Number of distinct ids, added tokens included (49,408 for CLIP).
    public var vocabularySize: Int { idToToken.count }

    public func tokenID(for token: String) -> Int? {
        if let id = bpe.vocab[token] { return id }
        return (rawAddedTokens + normalizedAddedTokens).first { String(String.UnicodeScalarView($0.scalars)) == token }?.id
    }

    public func token(for id: Int) -> String? { idToToken[id] }

    /// The prompt's token ids, without bos/eos, truncation or padding.
    public func tokenize(_ text: String) -> [Int] {
        var ids: [Int] = []
        for segment in split(Array(text.unicodeScalars), on: rawAddedTokens) {
            switch segment {
            case .token(let id):
                ids += expansions[id] ?? [id]
            case .text(let rawText):
                let normalizedText = TextNormalization.normalize(String(String.UnicodeScalarView(rawText)))
                for inner in split(Array(normalizedText.unicodeScalars), on: normalizedAddedTokens) {
                    switch inner {
                    case .token(let id): ids += expansions[id] ?? [id]
                    case .text(let t): ids += encodeNormalized(t)
                    }
                }
            }
        }
        return ids
    }

    /// `tokenizer(text, padding="max_length", max_length=maxLength, truncation=True)`; pass
    /// `padding: false` for the unpadded ids and `truncation: false` to keep every token.
    public func encode(
        _ text: String, maxLength: Int? = nil, padding: Bool = true, truncation: Bool = true
    ) -> TokenizedPrompt {
        let limit = maxLength ?? modelMaxLength
        var content = tokenize(text)
        let untruncated = content.count + 2
        if truncation { content = Array(content.prefix(max(0, limit - 2))) }
        var ids = [bosTokenID] + content + [eosTokenID]
        let length = ids.count
        var mask = [Int](repeating: 1, count: length)
        if padding, ids.count < limit {
            ids += [Int](repeating: padTokenID, count: limit - ids.count)
            mask += [Int](repeating: 0, count: limit - length)
        }
        return TokenizedPrompt(inputIDs: ids, attentionMask: mask, length: length, untruncatedLength: untruncated)
    }

    /// Several prompts at once, each padded/truncated to the same length (as diffusers tokenizes a batch).
    public func encode(
        batch texts: [String], maxLength: Int? = nil, padding: Bool = true, truncation: Bool = true
    ) -> [TokenizedPrompt] {
        texts.map { encode($0, maxLength: maxLength, padding: padding, truncation: truncation) }
    }

    // MARK: - Steps

    private enum Segment {
        case text([Unicode.Scalar])
        case token(Int)
    }

    /// Leftmost-longest matching of added tokens (the aho-corasick mode `tokenizers` uses).
    private func split(_ s: [Unicode.Scalar], on tokens: [(scalars: [Unicode.Scalar], id: Int)]) -> [Segment] {
        guard !tokens.isEmpty else { return s.isEmpty ? [] : [.text(s)] }
        var out: [Segment] = []
        var start = 0
        var i = 0
        while i < s.count {
            // `tokens` is sorted longest first, so the first hit at a position is the longest.
            let hit = tokens.first { t in
                i + t.scalars.count <= s.count && s[i..<(i + t.scalars.count)].elementsEqual(t.scalars)
            }
            if let hit {
                if start < i { out.append(.text(Array(s[start..<i]))) }
                out.append(.token(hit.id))
                i += hit.scalars.count
                start = i
            } else {
                i += 1
            }
        }
        if start < s.count { out.append(.text(Array(s[start..<s.count]))) }
        return out
    }

    private func encodeNormalized(_ scalars: [Unicode.Scalar]) -> [Int] {
        var ids: [Int] = []
        for piece in TextNormalization.clipSplit(String(String.UnicodeScalarView(scalars))) {
            for word in TextNormalization.gpt2Split(piece) {
                ids += bpe.encode(word: TextNormalization.byteLevel(word))
            }
        }
        return ids
    }
}
