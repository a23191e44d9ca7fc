/// Errors of the pipelines: bad arguments (rejected before any work), bad model folders, cancellation.
public enum PipelineError: Error, CustomStringConvertible, Equatable, Sendable {
    /// An argument outside its domain: names the parameter and the rule.
    case invalidArgument(String)
    /// A model folder that is missing something or holds something unusable: names the path.
    case badModel(path: String, detail: String)
    /// The progress callback asked to stop.
    case cancelled

    public var description: String {
        switch self {
        case .invalidArgument(let m): return m
        case .badModel(let path, let detail): return "\(path): \(detail)"
        case .cancelled: return "cancelled"
        }
    }
}
