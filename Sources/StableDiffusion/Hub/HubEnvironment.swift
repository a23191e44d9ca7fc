import Foundation

/// The settings huggingface_hub reads from the environment (constants.py, utils/_auth.py), resolved the same way
/// so that `sd` and Python share one cache, endpoint and login.
public struct HubEnvironment: Sendable, Equatable {
    /// `HF_ENDPOINT` (trailing `/` removed), default `https://huggingface.co`.
    public var endpoint: URL
    /// `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`,
    /// else `~/.cache/huggingface/hub`, where `~` is `$HOME` when set (Python's `expanduser`), else the
    /// account's home directory.
    public var cacheDirectory: URL
    /// `HF_TOKEN` (or legacy `HUGGING_FACE_HUB_TOKEN`), else the token file; nil when not logged in
    /// or when `HF_HUB_DISABLE_IMPLICIT_TOKEN` is set.
    public var token: String?
    /// `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) is 1/ON/YES/TRUE: never touch the network.
    public var offline: Bool
    /// `HF_HUB_ETAG_TIMEOUT` / `HF_HUB_DOWNLOAD_TIMEOUT` (seconds, default 10 each): idle time before giving up.
    public var metadataTimeout: TimeInterval
    public var downloadTimeout: TimeInterval

    public static let defaultEndpoint = "https://huggingface.co"

    public init(endpoint: URL, cacheDirectory: URL, token: String? = nil, offline: Bool = false,
                metadataTimeout: TimeInterval = 10, downloadTimeout: TimeInterval = 10) {
        self.endpoint = endpoint
        self.cacheDirectory = cacheDirectory
        self.token = token
        self.offline = offline
        self.metadataTimeout = metadataTimeout
        self.downloadTimeout = downloadTimeout
    }

    /// Reads `environment` (the process environment by default) exactly as huggingface_hub does.
    public init(environment env: [String: String] = ProcessInfo.processInfo.environment) throws {
        func value(_ key: String) -> String? { env[key].flatMap { $0.isEmpty ? nil : $0 } }
        func path(_ text: String) -> String { Self.expand(text, env) }
        let endpointText = (env["HF_ENDPOINT"] ?? Self.defaultEndpoint).replacingOccurrences(of: "/+$", with: "", options: .regularExpression)
        guard let endpoint = URL(string: endpointText), let scheme = endpoint.scheme, ["http", "https"].contains(scheme.lowercased()), endpoint.host != nil else {
            throw HubError.cache(path: "HF_ENDPOINT", detail: "\"\(endpointText)\" is not an http(s) URL")
        }
        let home = Self.expandUser("~", env)
        // os.path.join: no doubled slash when the home is "/" (an empty HOME expands to it).
        let defaultCache = home.hasSuffix("/") ? home + ".cache" : home + "/.cache"
        let hfHome = path(env["HF_HOME"] ?? ((env["XDG_CACHE_HOME"] ?? defaultCache) + "/huggingface"))
        let cache = path(env["HF_HUB_CACHE"] ?? env["HUGGINGFACE_HUB_CACHE"] ?? "\(hfHome)/hub")
        let tokenPath = path(env["HF_TOKEN_PATH"] ?? "\(hfHome)/token")
        var token: String?
        if !Self.isTrue(env["HF_HUB_DISABLE_IMPLICIT_TOKEN"]) {
            token = Self.clean(value("HF_TOKEN") ?? value("HUGGING_FACE_HUB_TOKEN"))
                ?? Self.clean(try? String(contentsOfFile: tokenPath, encoding: .utf8))
        }
        self.init(endpoint: endpoint, cacheDirectory: URL(fileURLWithPath: cache, isDirectory: true), token: token,
                  offline: Self.isTrue(value("HF_HUB_OFFLINE") ?? env["TRANSFORMERS_OFFLINE"]),
                  metadataTimeout: env["HF_HUB_ETAG_TIMEOUT"].flatMap(TimeInterval.init) ?? 10,
                  downloadTimeout: env["HF_HUB_DOWNLOAD_TIMEOUT"].flatMap(TimeInterval.init) ?? 10)
    }

    /// huggingface_hub's `_is_true`.
    static func isTrue(_ value: String?) -> Bool { value.map { ["1", "ON", "YES", "TRUE"].contains($0.uppercased()) } ?? false }

    /// huggingface_hub's `_clean_token`: CR/LF removed, whitespace trimmed, empty means none.
    static func clean(_ token: String?) -> String? {
        guard let token else { return nil }
        let t = token.replacingOccurrences(of: "\r", with: "").replacingOccurrences(of: "\n", with: "").trimmingCharacters(in: .whitespaces)
        return t.isEmpty ? nil : t
    }

    /// Python's `os.path.expanduser` for `~` and `~/...`: `$HOME` when the variable exists (even empty, as
    /// Python does), else the account's home directory. Containers, CI, `sudo -E` and services often set a
    /// HOME that is not the passwd entry's, and huggingface_hub follows HOME.
    static func expandUser(_ text: String, _ env: [String: String]) -> String {
        guard text == "~" || text.hasPrefix("~/") else { return text }
        var home = env["HOME"] ?? NSHomeDirectory()
        while home.hasSuffix("/") { home.removeLast() }
        let expanded = home + text.dropFirst()
        return expanded.isEmpty ? "/" : expanded
    }

    /// `os.path.expandvars(os.path.expanduser(p))` for the common forms: `~`, `$VAR`, `${VAR}`.
    static func expand(_ text: String, _ env: [String: String]) -> String {
        let s = expandUser(text, env)
        guard s.contains("$"), let re = try? NSRegularExpression(pattern: "\\$(\\w+|\\{[^}]*\\})") else { return s }
        var out = ""
        var last = s.startIndex
        for m in re.matches(in: s, range: NSRange(s.startIndex..., in: s)) {
            guard let r = Range(m.range, in: s), let nr = Range(m.range(at: 1), in: s) else { continue }
            let name = s[nr].trimmingCharacters(in: CharacterSet(charactersIn: "{}"))
            out += s[last..<r.lowerBound] + (env[name] ?? String(s[r]))   // unknown variables stay as written
            last = r.upperBound
        }
        return out + s[last...]
    }
}
