/// Errors raised by the tensor layer. Every case carries a message naming what went wrong and where,
/// because these reach users (a bad model file, a wrong shape) and must be actionable.
public enum TensorError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Shapes that do not fit the operation, e.g. `conv2d: input has 3 channels, weight expects 4`.
    case shapeMismatch(String)
    /// An argument outside its domain (negative size, zero groups, ...).
    case invalidArgument(String)
    /// A file that is missing, truncated or malformed. `file` is the path, `detail` names the part.
    case badFile(file: String, detail: String)
    /// The compute backend refused an operation (oneDNN status, unsupported configuration).
    case backend(String)

    public var description: String {
        switch self {
        case .shapeMismatch(let m): return "shape mismatch: \(m)"
        case .invalidArgument(let m): return "invalid argument: \(m)"
        case .badFile(let file, let detail): return "\(file): \(detail)"
        case .backend(let m): return "compute backend error: \(m)"
        }
    }
}
