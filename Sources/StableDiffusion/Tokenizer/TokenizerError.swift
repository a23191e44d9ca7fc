import Foundation

/// Errors raised while loading tokenizer files. Each names the file it concerns, so a user can fix
/// the model folder without reading code.
public enum TokenizerError: Error, Equatable, CustomStringConvertible, Sendable {
    /// No usable tokenizer files in a directory (neither `tokenizer.json` nor `vocab.json` + `merges.txt`),
    /// or no such directory.
    case noTokenizerFiles(directory: String)
    /// A file the tokenizer needs is absent.
    case missingFile(path: String)
    /// A file exists but could not be read.
    case unreadableFile(path: String, reason: String)
    /// A file was read but its content is not what a CLIP tokenizer expects.
    case malformedFile(path: String, reason: String)

    public var description: String {
        switch self {
        case .noTokenizerFiles(let directory):
            return "no tokenizer files in \(directory): expected tokenizer.json, or vocab.json and merges.txt"
        case .missingFile(let path):
            return "missing tokenizer file \(path)"
        case .unreadableFile(let path, let reason):
            return "cannot read tokenizer file \(path): \(reason)"
        case .malformedFile(let path, let reason):
            return "malformed tokenizer file \(path): \(reason)"
        }
    }
}
