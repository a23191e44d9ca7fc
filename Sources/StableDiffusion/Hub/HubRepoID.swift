import Foundation

/// A Hugging Face Hub model repository id, `owner/name`, with an optional `@revision`
/// (branch, tag or 40-hex commit), as typed on the command line: `runwayml/stable-diffusion-v1-5@fp16`.
public struct HubRepoID: Sendable, Hashable, CustomStringConvertible {
    /// `owner/name`.
    public let id: String
    /// The revision after `@`, nil when none was given (the caller's default, usually `main`).
    public let revision: String?

    /// Validates like huggingface_hub's `validate_repo_id` (each part 1-96 of `[A-Za-z0-9_.-]`, starting and
    /// ending with a letter, digit or `_`; no `--` or `..`; not ending in `.git`), and additionally requires
    /// an owner: a bare `name` is far more likely a mistyped local folder than a legacy canonical repo.
    public init(_ text: String) throws {
        var repo = Substring(text)
        var revision: String?
        if let at = text.firstIndex(of: "@") {
            repo = text[..<at]
            let rev = String(text[text.index(after: at)...])
            guard !rev.isEmpty else { throw HubError.invalidRepoID(text, reason: "the revision after '@' is empty") }
            guard Self.isValidRevision(rev) else {
                throw HubError.invalidRepoID(text, reason: "revision \"\(rev)\" is not a valid branch, tag or commit")
            }
            revision = rev
        }
        let parts = repo.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            throw HubError.invalidRepoID(text, reason: parts.count == 1
                ? "expected owner/name (a local model folder that does not exist is also reported like this)"
                : "expected owner/name, got \(parts.count) path components")
        }
        for part in parts {
            if let problem = Self.problem(in: part) { throw HubError.invalidRepoID(text, reason: problem) }
        }
        let id = String(repo)
        if id.contains("--") || id.contains("..") { throw HubError.invalidRepoID(text, reason: "'--' and '..' are not allowed") }
        if id.hasSuffix(".git") { throw HubError.invalidRepoID(text, reason: "a repo id cannot end in .git") }
        self.id = id
        self.revision = revision
    }

    /// A git ref name that is also safe as a path under `refs/`: no whitespace, no empty, `.` or `..` segment.
    public static func isValidRevision(_ rev: String) -> Bool {
        !rev.isEmpty && !rev.contains(where: { $0.isWhitespace || $0.isNewline || $0 == "\\" })
            && !rev.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0.isEmpty || $0 == "." || $0 == ".." })
    }

    /// Checks a repo id and revision given separately (the library's entry points), with the same rules.
    static func validate(repo: String, revision: String) throws {
        let id = try HubRepoID(repo)
        guard id.revision == nil else { throw HubError.invalidRepoID(repo, reason: "pass the revision separately, not after '@'") }
        guard isValidRevision(revision) else { throw HubError.invalidRepoID("\(repo)@\(revision)", reason: "revision \"\(revision)\" is not a valid branch, tag or commit") }
    }

    /// True when `text` names an existing file or folder: that is a local model, never a repo id.
    public static func isLocalPath(_ text: String) -> Bool {
        FileManager.default.fileExists(atPath: (text as NSString).expandingTildeInPath)
    }

    /// Parses `text` unless it is an existing local path (then nil).
    public static func parseUnlessLocal(_ text: String) throws -> HubRepoID? {
        isLocalPath(text) ? nil : try HubRepoID(text)
    }

    public var owner: String { String(id.split(separator: "/")[0]) }
    public var name: String { String(id.split(separator: "/")[1]) }
    public var description: String { revision.map { "\(id)@\($0)" } ?? id }

    private static func isWordChar(_ c: Character) -> Bool { c.isASCII && (c.isLetter || c.isNumber || c == "_") }

    private static func problem(in part: Substring) -> String? {
        if part.isEmpty { return "owner and name must not be empty" }
        if part.count > 96 { return "\"\(part)\" is longer than 96 characters" }
        if let bad = part.first(where: { !(isWordChar($0) || $0 == "-" || $0 == ".") }) {
            return "character \"\(bad)\" is not allowed (letters, digits, '-', '_', '.')"
        }
        if let f = part.first, let l = part.last, !isWordChar(f) || !isWordChar(l) {
            return "\"\(part)\" must start and end with a letter, digit or '_'"
        }
        return nil
    }
}
