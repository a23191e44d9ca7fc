import Foundation

/// Downloads diffusers pipelines from the Hugging Face Hub into the shared huggingface_hub cache
/// (or finds them there), so `StableDiffusionComponents(directory:)` can load the snapshot folder.
public final class HubClient: @unchecked Sendable {
    public let environment: HubEnvironment
    /// Retries of a dropped transfer (each resumes where the last stopped), as huggingface_hub's `http_get` does.
    public var maxRetries: Int
    /// Pause before a retry.
    public var retryDelay: TimeInterval = 1
    public var userAgent: String

    public init(environment: HubEnvironment? = nil, maxRetries: Int = 5) throws {
        self.environment = try environment ?? HubEnvironment()
        self.maxRetries = maxRetries
        #if os(Linux)
        let os = "linux"
        #else
        let os = "darwin"
        #endif
        // huggingface_hub's shape: "library/version; hf_hub/...; ..." so the Hub's statistics can tell us apart.
        userAgent = "sd-swift/1.0; hf_hub/swift; os/\(os)"
    }

    /// Headers of every Hub request; the token only when one is configured.
    func headers(token: Bool = true) -> [String: String] {
        var h = ["User-Agent": userAgent, "Accept-Encoding": "identity"]
        if token, let t = environment.token { h["Authorization"] = "Bearer \(t)" }
        return h
    }

    /// `quote(s, safe="")` for revisions, `quote(path)` (keeping `/`) for file paths.
    static func quote(_ s: String, keepSlash: Bool) -> String {
        var allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
        if keepSlash { allowed.insert("/") }
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }

    func resolveURL(_ repo: String, _ revision: String, _ path: String) -> URL? {
        URL(string: environment.endpoint.absoluteString + "/\(repo)/resolve/\(Self.quote(revision, keepSlash: false))/\(Self.quote(path, keepSlash: true))")
    }

    /// A request that follows redirects itself, like huggingface_hub's `_httpx2_follow_hub_redirects_with_backoff`:
    /// relative and same/Hub-host ones are followed with the token; one to another host (a CDN) is returned as is
    /// when `stopAtForeignRedirect`, else followed without the token.
    func request(_ method: String, _ url: URL, timeout: TimeInterval, stopAtForeignRedirect: Bool,
                 onResponse: @escaping (HubHTTPResponse) throws -> Void = { _ in },
                 onData: @escaping (Data) throws -> Void = { _ in },
                 extraHeaders: [String: String] = [:], sendToken: Bool = true) throws -> HubHTTPResponse {
        var url = url
        var token = sendToken
        for _ in 0..<20 {
            let h = headers(token: token).merging(extraHeaders) { $1 }
            var redirect: HubHTTPResponse?
            let r = try HubHTTPRequest.perform(method: method, url: url, headers: h, timeout: timeout, onResponse: { r in
                if r.isRedirect { redirect = r } else { try onResponse(r) }
            }, onData: { d in if redirect == nil { try onData(d) } })
            guard r.isRedirect, let location = r["Location"], let target = URL(string: location, relativeTo: url)?.absoluteURL else { return r }
            if !HubOrigin.isSameOrHub(url, target, endpoint: environment.endpoint) {
                if stopAtForeignRedirect { return r }
                token = false   // never hand the token to a CDN or any other host
            }
            url = target
        }
        throw HubTransportError(detail: "more than 20 redirects from \(url.absoluteString)")
    }

    /// huggingface_hub's `hf_raise_for_status`, as an error naming repo, revision and file.
    func error(for r: HubHTTPResponse, repo: String, revision: String, path: String?) -> HubError {
        let code = r["X-Error-Code"], message = r["X-Error-Message"]
        switch code {
        case "RevisionNotFound": return .revisionNotFound(repo: repo, revision: revision)
        case "EntryNotFound": return .fileNotFound(repo: repo, revision: revision, path: path ?? "?")
        case "GatedRepo":
            return .accessDenied(repo: repo, revision: revision, path: path, status: r.status, gated: true, sentToken: environment.token != nil)
        case "RepoNotFound" where r.status == 401 && environment.token == nil:
            // The Hub answers 401 for private repos and missing ones alike when no token is sent.
            return .accessDenied(repo: repo, revision: revision, path: path, status: r.status, gated: false, sentToken: false)
        case "RepoNotFound": return .repoNotFound(repo: repo, status: r.status)
        default:
            if r.status == 401 || r.status == 403 {
                return .accessDenied(repo: repo, revision: revision, path: path, status: r.status, gated: false, sentToken: environment.token != nil)
            }
            if r.status == 404 { return path == nil ? .repoNotFound(repo: repo, status: 404) : .fileNotFound(repo: repo, revision: revision, path: path ?? "?") }
            return .http(repo: repo, revision: revision, path: path, status: r.status, url: r.url.absoluteString, message: message)
        }
    }

    /// `GET /api/models/{repo}/revision/{revision}`: the commit the revision points at and the repo's files.
    func repoInfo(_ repo: String, revision: String) throws -> (commit: String, files: [String]) {
        guard let url = URL(string: environment.endpoint.absoluteString + "/api/models/\(repo)/revision/\(Self.quote(revision, keepSlash: false))") else {
            throw HubError.badResponse(repo: repo, revision: revision, path: nil, detail: "cannot build the API URL")
        }
        var body = Data()
        let r: HubHTTPResponse
        do {
            r = try request("GET", url, timeout: environment.metadataTimeout, stopAtForeignRedirect: false, onData: { body.append($0) })
        } catch let e as HubTransportError {
            throw HubError.network(repo: repo, revision: revision, path: nil, detail: e.detail)
        }
        guard r.status == 200 else { throw error(for: r, repo: repo, revision: revision, path: nil) }
        guard let json = try? JSONValue.parse(body, file: url.absoluteString).objectValue,
              let sha = json["sha"]?.stringValue, HubCacheRepo.isCommitHash(sha) else {
            throw HubError.badResponse(repo: repo, revision: revision, path: nil, detail: "the model info has no 40-hex \"sha\"")
        }
        let files = json["siblings"]?.arrayValue?.compactMap { $0.objectValue?["rfilename"]?.stringValue } ?? []
        return (sha, files)
    }
}
