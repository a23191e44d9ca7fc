import Foundation

/// AUTOMATIC1111's prompt-attention parser (`parse_prompt_attention`, as in diffusers' community
/// `lpw_stable_diffusion`), plus A1111's `BREAK`.
///
/// - `(text)` multiplies the weight of `text` by 1.1, `[text]` by 1/1.1, `(text:1.3)` by 1.3; they nest.
/// - `\(`, `\)`, `\[`, `\]`, `\\` are the literal characters; a lone `\` is dropped.
/// - Unmatched `)`/`]` are literal text; brackets still open at the end apply to the rest of the prompt.
/// - `BREAK` (a whole word, upper case) ends the current 75-token chunk: the chunk is padded and the
///   text after it starts a new one. Its weight is never changed by brackets around it.
public enum PromptAttentionParser {
    /// A run of text with its weight, or a chunk break.
    public enum Piece: Equatable, Sendable {
        case text(String, Double)
        case chunkBreak
    }

    public static let roundMultiplier = 1.1
    public static let squareMultiplier = 1 / 1.1

    public static func parse(_ prompt: String) -> [Piece] {
        var res: [(text: String, weight: Double, isBreak: Bool)] = []
        var round: [Int] = [], square: [Int] = []
        func multiply(from start: Int, _ m: Double) {
            for p in start..<res.count where !res[p].isBreak { res[p].weight *= m }
        }
        // Code points, as Python indexes strings (a grapheme may join `\\` with a combining mark).
        let s = Array(prompt.unicodeScalars)
        var i = 0
        while i < s.count {
            let c = s[i]
            if c == "\\" {
                // `\(` `\)` `\[` `\]` `\\` are the character; a lone backslash yields nothing.
                if i + 1 < s.count, "()[]\\".unicodeScalars.contains(s[i + 1]) {
                    res.append((str(s[(i + 1)..<(i + 2)]), 1, false)); i += 2
                } else {
                    res.append(("", 1, false)); i += 1
                }
            } else if c == "(" {
                round.append(res.count); i += 1
            } else if c == "[" {
                square.append(res.count); i += 1
            } else if c == ":", let (weight, end) = weightSuffix(s, i), !round.isEmpty {
                multiply(from: round.removeLast(), weight); i = end
            } else if c == ":", let (_, end) = weightSuffix(s, i) {
                // The regex matched `:1.3)` as one token; with no open bracket it is plain text.
                res.append((str(s[i..<end]), 1, false)); i = end
            } else if c == ")", !round.isEmpty {
                multiply(from: round.removeLast(), roundMultiplier); i += 1
            } else if c == "]", !square.isEmpty {
                multiply(from: square.removeLast(), squareMultiplier); i += 1
            } else if c == ")" || c == "]" || c == ":" {
                res.append((str(s[i..<(i + 1)]), 1, false)); i += 1
            } else {
                var j = i
                while j < s.count, !"\\()[]:".unicodeScalars.contains(s[j]) { j += 1 }
                for (k, part) in splitOnBreak(str(s[i..<j])).enumerated() {
                    if k > 0 { res.append(("BREAK", 1, true)) }
                    res.append((part, 1, false))
                }
                i = j
            }
        }
        for p in round { multiply(from: p, roundMultiplier) }
        for p in square { multiply(from: p, squareMultiplier) }
        if res.isEmpty { res = [("", 1, false)] }
        // Merge runs of identical weights (never across a break).
        var merged: [(text: String, weight: Double, isBreak: Bool)] = []
        for r in res {
            if let last = merged.last, !last.isBreak, !r.isBreak, last.weight == r.weight {
                merged[merged.count - 1].text += r.text
            } else {
                merged.append(r)
            }
        }
        return merged.map { $0.isBreak ? .chunkBreak : .text($0.text, $0.weight) }
    }

    /// `:([+-]?[.\d]+)\)` at `i`: the number and the index after the `)`; nil when absent or not a number.
    private static func str(_ scalars: ArraySlice<Unicode.Scalar>) -> String {
        String(String.UnicodeScalarView(scalars))
    }

    private static func weightSuffix(_ s: [Unicode.Scalar], _ i: Int) -> (Double, Int)? {
        var j = i + 1
        var number = ""
        if j < s.count, s[j] == "+" || s[j] == "-" { number.unicodeScalars.append(s[j]); j += 1 }
        let digitsStart = j
        while j < s.count, s[j] == "." || ("0"..."9").contains(s[j]) { number.unicodeScalars.append(s[j]); j += 1 }
        guard j > digitsStart, j < s.count, s[j] == ")", let value = Double(number) else { return nil }
        return (value, j + 1)
    }

    /// Splits on A1111's `\s*\bBREAK\b\s*`.
    private static func splitOnBreak(_ text: String) -> [String] {
        guard text.contains("BREAK"),
              let re = try? NSRegularExpression(pattern: "\\s*\\bBREAK\\b\\s*") else { return [text] }
        let ns = text as NSString
        var parts: [String] = [], start = 0
        for m in re.matches(in: text, range: NSRange(location: 0, length: ns.length)) {
            parts.append(ns.substring(with: NSRange(location: start, length: m.range.location - start)))
            start = m.range.location + m.range.length
        }
        parts.append(ns.substring(from: start))
        return parts
    }
}
