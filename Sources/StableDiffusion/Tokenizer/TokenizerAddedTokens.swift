extension CLIPTokenizer {
    /// A copy with `tokens` added as transformers' `tokenizer.add_tokens` adds them (not special,
    /// `normalized=True`: matched in the lower-cased, normalized text), with the next free ids.
    /// Returns the copy and the new ids. A token already known is an error.
    public func adding(tokens: [String]) throws -> (tokenizer: CLIPTokenizer, ids: [Int]) {
        var copy = self
        var ids: [Int] = []
        for token in tokens {
            guard !token.isEmpty, copy.tokenID(for: token) == nil else {
                throw PipelineError.invalidArgument(token.isEmpty ? "an empty token cannot be added" : "token \"\(token)\" is already in the tokenizer's vocabulary; choose another token name")
            }
            let id = (copy.idToToken.keys.max() ?? -1) + 1
            copy.idToToken[id] = token
            copy.normalizedAddedTokens.append((Array(token.unicodeScalars), id))
            ids.append(id)
        }
        // Leftmost-longest matching expects the longest tokens first.
        copy.normalizedAddedTokens.sort { $0.scalars.count > $1.scalars.count }
        return (copy, ids)
    }
}
