import Foundation

/// Everything that can go wrong fetching a model from the Hub; each message names the repo, the revision
/// and, where there is one, the file.
public enum HubError: Error, Equatable, CustomStringConvertible, LocalizedError {
    case invalidRepoID(String, reason: String)
    /// `X-Error-Code: RepoNotFound` (or a 401 without a more precise code).
    case repoNotFound(repo: String, status: Int)
    case revisionNotFound(repo: String, revision: String)
    case fileNotFound(repo: String, revision: String, path: String)
    /// 401/403 on a gated or private repo: no token, or one without access.
    case accessDenied(repo: String, revision: String, path: String?, status: Int, gated: Bool, sentToken: Bool)
    case http(repo: String, revision: String, path: String?, status: Int, url: String, message: String?)
    /// Connection refused, timed out, dropped: the `.incomplete` file (if any) is kept for resuming.
    case network(repo: String, revision: String, path: String?, detail: String)
    /// `HF_HUB_OFFLINE` is set (or the Hub is unreachable) and the cache lacks what is needed.
    case notCached(repo: String, revision: String, path: String?, cache: String, offline: Bool, detail: String?)
    /// The downloaded bytes do not hash to the LFS sha256 (the ETag); the file was removed.
    case corrupted(repo: String, revision: String, path: String, expected: String, actual: String)
    case sizeMismatch(repo: String, revision: String, path: String, expected: Int64, actual: Int64)
    /// The server's answer is not what the Hub sends (missing X-Repo-Commit / ETag, bad JSON).
    case badResponse(repo: String, revision: String, path: String?, detail: String)
    /// The repo's files do not make a loadable diffusers pipeline (no model_index.json, no weights, no variant).
    case notAPipeline(repo: String, revision: String, detail: String)
    case cache(path: String, detail: String)

    public var errorDescription: String? { description }

    public var description: String {
        func at(_ repo: String, _ revision: String, _ path: String?) -> String {
            (path.map { "file \($0) of " } ?? "") + "repo \(repo) at revision \(revision)"
        }
        switch self {
        case .invalidRepoID(let text, let reason):
            return "\"\(text)\" is not a Hugging Face repo id (owner/name[@revision]): \(reason)"
        case .repoNotFound(let repo, let status):
            return "repo \(repo) not found on the Hub (HTTP \(status)); check the name, and if it is private pass a token with HF_TOKEN or `hf auth login`"
        case .revisionNotFound(let repo, let revision):
            return "revision \(revision) not found in repo \(repo) (not a branch, tag or commit of it)"
        case .fileNotFound(let repo, let revision, let path):
            return "file \(path) not found in repo \(repo) at revision \(revision)"
        case .accessDenied(let repo, let revision, let path, let status, let gated, let sentToken):
            let what = gated ? "is gated" : "is private or gated"
            let fix = sentToken
                ? "the token sent has no access: accept the conditions on the repo's page with that account, or use another token"
                : "pass a token: set HF_TOKEN=hf_... or run `hf auth login` (`huggingface-cli login`), after accepting the repo's conditions on its page"
            return "\(at(repo, revision, path)): HTTP \(status), the repo \(what); \(fix)"
        case .http(let repo, let revision, let path, let status, let url, let message):
            return "\(at(repo, revision, path)): HTTP \(status) from \(url)" + (message.map { ": \($0)" } ?? "")
        case .network(let repo, let revision, let path, let detail):
            return "\(at(repo, revision, path)): network error: \(detail) (run again to resume; HF_HUB_OFFLINE=1 uses only the cache)"
        case .notCached(let repo, let revision, let path, let cache, let offline, let detail):
            let why = offline ? "HF_HUB_OFFLINE is set" : "the Hub could not be reached"
            return "\(at(repo, revision, path)) is not in the cache \(cache) and \(why)" + (detail.map { " (\($0))" } ?? "")
        case .corrupted(let repo, let revision, let path, let expected, let actual):
            return "\(at(repo, revision, path)): download corrupted (sha256 \(actual), expected \(expected)); the partial file was removed, run again"
        case .sizeMismatch(let repo, let revision, let path, let expected, let actual):
            return "\(at(repo, revision, path)): got \(actual) bytes, expected \(expected); run again to resume"
        case .badResponse(let repo, let revision, let path, let detail):
            return "\(at(repo, revision, path)): unexpected answer from the Hub: \(detail) (is HF_ENDPOINT a Hub?)"
        case .notAPipeline(let repo, let revision, let detail):
            return "repo \(repo) at revision \(revision) is not a loadable diffusers pipeline: \(detail)"
        case .cache(let path, let detail):
            return "Hugging Face cache: \(path): \(detail)"
        }
    }
}
