import Foundation

/// The text pipeline of transformers 5's `CLIPTokenizer` (a `tokenizers` backend), before BPE:
///
///   normalizer:     NFC, then `\s+` -> " ", then per-character lower-casing
///   pre-tokenizer:  Split on `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
///                   keeping the matches, then ByteLevel (GPT-2's regex split, then bytes -> printable chars)
///
/// transformers 5 no longer runs ftfy, `html.unescape` or the BasicTokenizer: `&amp;` stays four
/// characters and whitespace is just a separator. The regexes are hand-written scanners over Unicode
/// scalars with the same character classes as the Oniguruma engine `tokenizers` uses.
enum TextNormalization {
    /// The Unicode versions of the tables inside `tokenizers` 0.23 (measured against it): its NFC
    /// (unicode-normalization-alignments) knows Unicode 9.0, its regex engine (Oniguruma) 16.0, and
    /// Rust's `char::to_lowercase` 17.0. Characters newer than a table behave as unassigned there.
    static let nfcVersion = (major: 9, minor: 0)
    static let regexVersion = (major: 16, minor: 0)
    static let lowercaseVersion = (major: 17, minor: 0)

    @inline(__always)
    static func isNewer(_ s: Unicode.Scalar, than v: (major: Int, minor: Int)) -> Bool {
        guard let age = s.properties.age else { return false }  // unassigned everywhere
        return age.major > v.major || (age.major == v.major && age.minor > v.minor)
    }

    /// NFC then lower-casing. The `\s+` -> " " replacement is skipped: whitespace only ever separates
    /// pieces in the split that follows, so collapsing it changes no token.
    static func normalize(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        for scalar in nfc(text).unicodeScalars {
            // Rust's `char::to_lowercase`: the full, context-free mapping (İ -> i + U+0307; Σ -> σ always).
            let props = scalar.properties
            if props.changesWhenLowercased && !isNewer(scalar, than: lowercaseVersion) {
                out.append(contentsOf: props.lowercaseMapping.unicodeScalars)
            } else {
                out.append(scalar)
            }
        }
        return String(out)
    }

    /// NFC as of Unicode 9.0. A character newer than that is, to the old tables, a starter with no
    /// decomposition that composes with nothing, so it splits the text into independently normalized
    /// runs; within a run of older characters, today's NFC equals 9.0's (normalization stability).
    static func nfc(_ text: String) -> String {
        if text.utf8.allSatisfy({ $0 < 0x80 }) { return text }  // ASCII is always NFC
        let scalars = text.unicodeScalars
        guard scalars.contains(where: { isNewer($0, than: nfcVersion) }) else {
            return text.precomposedStringWithCanonicalMapping
        }
        var out = ""
        var run = String.UnicodeScalarView()
        for scalar in scalars {
            if isNewer(scalar, than: nfcVersion) {
                out += String(run).precomposedStringWithCanonicalMapping
                run.removeAll()
                out.unicodeScalars.append(scalar)
            } else {
                run.append(scalar)
            }
        }
        out += String(run).precomposedStringWithCanonicalMapping
        return out
    }

    enum CharClass { case letter, number, space, other }

    @inline(__always)
    static func classify(_ s: Unicode.Scalar) -> CharClass {
        // Oniguruma's \s is U+0009-000D, U+0085 and the Z* categories: exactly Unicode White_Space.
        if s.properties.isWhitespace { return .space }
        if isNewer(s, than: regexVersion) { return .other }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return .letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return .number
        default:
            return .other
        }
    }

    private static let specialLiterals: [[Unicode.Scalar]] = [
        Array("<|startoftext|>".unicodeScalars), Array("<|endoftext|>".unicodeScalars),
    ]

    /// Length of a contraction (`'s 't 're 've 'm 'll 'd`) starting at `i`, or 0.
    @inline(__always)
    private static func contractionLength(_ s: [Unicode.Scalar], _ i: Int) -> Int {
        guard s[i] == "'", i + 1 < s.count else { return 0 }
        switch s[i + 1] {
        case "s", "t", "m", "d": return 2
        case "r", "v":
            return i + 2 < s.count && s[i + 2] == "e" ? 3 : 0
        case "l":
            return i + 2 < s.count && s[i + 2] == "l" ? 3 : 0
        default: return 0
        }
    }

    private static func startsWith(_ s: [Unicode.Scalar], _ i: Int, _ lit: [Unicode.Scalar]) -> Bool {
        guard i + lit.count <= s.count else { return false }
        for k in 0..<lit.count where s[i + k] != lit[k] { return false }
        return true
    }

    /// Extends a run of scalars of class `cls` from `i`.
    @inline(__always)
    private static func runEnd(_ s: [Unicode.Scalar], from i: Int, _ cls: CharClass) -> Int {
        var j = i
        while j < s.count, classify(s[j]) == cls { j += 1 }
        return j
    }

    /// CLIP's Split pre-tokenizer: the regex's matches, in order; everything unmatched (whitespace) is dropped.
    /// Alternatives are tried in the regex's order at each position, as a backtracking engine does.
    static func clipSplit(_ text: String) -> [[Unicode.Scalar]] {
        let s = Array(text.unicodeScalars)
        var pieces: [[Unicode.Scalar]] = []
        var i = 0
        while i < s.count {
            if let lit = specialLiterals.first(where: { startsWith(s, i, $0) }) {
                pieces.append(lit)
                i += lit.count
                continue
            }
            let c = contractionLength(s, i)
            if c > 0 {
                pieces.append(Array(s[i..<(i + c)]))
                i += c
                continue
            }
            switch classify(s[i]) {
            case .space:
                i += 1
            case .number:
                pieces.append([s[i]])
                i += 1
            case .letter:
                let j = runEnd(s, from: i, .letter)
                pieces.append(Array(s[i..<j]))
                i = j
            case .other:
                let j = runEnd(s, from: i, .other)
                pieces.append(Array(s[i..<j]))
                i = j
            }
        }
        return pieces
    }

    /// ByteLevel's GPT-2 split (`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`)
    /// applied to one CLIP piece. Pieces hold no whitespace, so only the first four alternatives can
    /// match; this matters for `<|endoftext|>`, which becomes `<|`, `endoftext`, `|>`.
    static func gpt2Split(_ s: [Unicode.Scalar]) -> [[Unicode.Scalar]] {
        var pieces: [[Unicode.Scalar]] = []
        var i = 0
        while i < s.count {
            let c = contractionLength(s, i)
            if c > 0 {
                pieces.append(Array(s[i..<(i + c)]))
                i += c
                continue
            }
            let cls = classify(s[i])
            let j = cls == .space ? i + 1 : runEnd(s, from: i, cls)
            pieces.append(Array(s[i..<j]))
            i = j
        }
        return pieces
    }

    /// GPT-2's reversible byte -> printable character table, in CLIP's vocabulary order
    /// (printable Latin-1 bytes map to themselves, the rest to U+0100...).
    static let byteToUnicode: [Character] = {
        var table = [Character](repeating: " ", count: 256)
        var n: UInt32 = 0
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            if printable {
                table[b] = Character(Unicode.Scalar(UInt8(b)))
            } else {
                // 256 + n is always a valid scalar (U+0100...U+0143).
                table[b] = Character(Unicode.Scalar(256 + n) ?? " ")
                n += 1
            }
        }
        return table
    }()

    /// The printable-character spelling of the UTF-8 bytes of a piece, one character per byte.
    static func byteLevel(_ piece: [Unicode.Scalar]) -> [String] {
        var out: [String] = []
        var view = String.UnicodeScalarView()
        view.append(contentsOf: piece)
        for byte in String(view).utf8 {
            out.append(String(byteToUnicode[Int(byte)]))
        }
        return out
    }
}
