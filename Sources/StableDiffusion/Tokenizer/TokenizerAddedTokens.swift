extension CLIPTokenizer {
    /// A copy with textual-inversion tokens added as transformers' `tokenizer.add_tokens` adds them (not
    /// special, `normalized=True`: matched, like the text, after NFC and lower-casing, so `MyTok` also
    /// matches `mytok`), with the next free ids. Each group is one embedding's tokens (`tok`, `tok_1`, …):
    /// `tok` in a prompt stands for the whole group, as diffusers' `maybe_convert_prompt` makes it.
    /// Returns the copy and the new ids in order. A token already known is an error.
    public func adding(embeddingTokens groups: [[String]]) throws -> (tokenizer: CLIPTokenizer, ids: [Int]) {
        var copy = self
        var all: [Int] = []
        for group in groups {
            var ids: [Int] = []
            for token in group {
                guard !token.isEmpty, copy.tokenID(for: token) == nil else {
                    throw PipelineError.invalidArgument(token.isEmpty ? "an empty token cannot be added" : "token \"\(token)\" is already in the tokenizer's vocabulary; choose another token name")
                }
                let id = (copy.idToToken.keys.max() ?? -1) + 1
                copy.idToToken[id] = token
                copy.normalizedAddedTokens.append((Array(TextNormalization.normalize(token).unicodeScalars), id))
                ids.append(id)
            }
            if ids.count > 1, let first = ids.first { copy.expansions[first] = ids }
            all += ids
        }
        // Leftmost-longest matching expects the longest tokens first.
        copy.normalizedAddedTokens.sort { $0.scalars.count > $1.scalars.count }
        return (copy, all)
    }
}
