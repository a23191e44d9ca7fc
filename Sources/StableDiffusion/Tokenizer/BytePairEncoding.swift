import Foundation

/// The BPE model of `tokenizers` as CLIP configures it: no continuing-subword prefix, `</w>` appended to
/// the last symbol of each word, unknown symbols kept separate (no `fuse_unk`), no dropout.
struct BytePairEncoding: Sendable {
    static let endOfWordSuffix = "</w>"

    private struct Pair: Hashable { let left: Int32; let right: Int32 }
    private struct Merge { let rank: Int32; let result: Int32 }

    let vocab: [String: Int]
    private let merges: [Pair: Merge]
    let unkID: Int?

    /// `mergeList` is in rank order; each merged token must be in the vocabulary, as `tokenizers` requires.
    init(vocab: [String: Int], mergeList: [(String, String)], unkToken: String?, mergesPath: String) throws {
        self.vocab = vocab
        var merges: [Pair: Merge] = [:]
        merges.reserveCapacity(mergeList.count)
        for (rank, (a, b)) in mergeList.enumerated() {
            guard let ia = vocab[a], let ib = vocab[b] else {
                throw TokenizerError.malformedFile(
                    path: mergesPath, reason: "merge \(rank + 1) '\(a) \(b)' uses a token that is not in the vocabulary")
            }
            guard let ir = vocab[a + b] else {
                throw TokenizerError.malformedFile(
                    path: mergesPath, reason: "merge \(rank + 1) '\(a) \(b)' makes '\(a + b)', which is not in the vocabulary")
            }
            let pair = Pair(left: Int32(ia), right: Int32(ib))
            // A repeated pair keeps its first (lowest) rank.
            if merges[pair] == nil { merges[pair] = Merge(rank: Int32(rank), result: Int32(ir)) }
        }
        self.merges = merges
        self.unkID = unkToken.flatMap { vocab[$0] }
    }

    /// Token ids of one pre-tokenized word, given as its byte-level characters.
    func encode(word chars: [String]) -> [Int] {
        guard !chars.isEmpty else { return [] }
        var symbols: [Int32] = []
        symbols.reserveCapacity(chars.count)
        for (k, ch) in chars.enumerated() {
            let spelled = k == chars.count - 1 ? ch + Self.endOfWordSuffix : ch
            if let id = vocab[spelled] {
                symbols.append(Int32(id))
            } else if let unk = unkID {
                symbols.append(Int32(unk))
            }
            // With no unk token `tokenizers` fails; a byte-level vocabulary always has every byte, so
            // dropping the symbol is only reachable with a non-CLIP vocabulary.
        }
        // Merge the lowest-ranked adjacent pair, leftmost first, until none applies: the order of
        // `tokenizers`' priority queue of (rank, position).
        while symbols.count > 1 {
            var best: Merge?
            var bestPos = -1
            for p in 0..<(symbols.count - 1) {
                if let m = merges[Pair(left: symbols[p], right: symbols[p + 1])],
                   best.map({ m.rank < $0.rank }) ?? true {
                    best = m
                    bestPos = p
                }
            }
            guard let merge = best else { break }
            symbols[bestPos] = merge.result
            symbols.remove(at: bestPos + 1)
        }
        return symbols.map(Int.init)
    }
}
