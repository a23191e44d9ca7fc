import Foundation

extension HubClient {
    /// The cached snapshot of a single-model repo, its `config.json` and weights at the top (a VAE such as
    /// `stabilityai/sd-vae-ft-mse` or `madebyollin/taesd`), downloading what is missing: `config.json` and one
    /// weight file, safetensors before `.bin`, of `variant` when given, as `AutoencoderKL.from_pretrained(repo)`
    /// fetches them. Offline (`HF_HUB_OFFLINE`) or with the Hub unreachable, the cached snapshot is used.
    public func modelSnapshot(repo: String, revision: String = "main", variant: String? = nil,
                              progress: HubProgressHandler? = nil) throws -> URL {
        try HubRepoID.validate(repo: repo, revision: revision)
        let cache = HubCacheRepo(cacheDirectory: environment.cacheDirectory, repo: repo)
        func cached(_ cause: HubError?) throws -> URL {
            guard let commit = cache.commit(for: revision), FileManager.default.fileExists(atPath: cache.snapshot(commit).path) else {
                throw HubError.notCached(repo: repo, revision: revision, path: nil, cache: environment.cacheDirectory.path,
                                         offline: environment.offline, detail: cause.map { "\($0)" } ?? "no snapshot of this revision")
            }
            let files = cachedTree(cache, commit) ?? cache.listSnapshot(commit)
            let wanted = try Self.modelFiles(files, repo: repo, revision: revision, variant: variant)
            if let absent = wanted.first(where: { !cache.hasFile(commit, $0) }) {
                throw HubError.notCached(repo: repo, revision: revision, path: absent, cache: environment.cacheDirectory.path,
                                         offline: environment.offline, detail: cause.map { "\($0)" })
            }
            return cache.snapshot(commit)
        }
        if environment.offline { return try cached(nil) }
        let info: (commit: String, files: [String])
        do {
            info = try repoInfo(repo, revision: revision)
        } catch let e as HubError {
            if case .revisionNotFound = e { throw e }
            if case .network = e { return try cached(e) }
            throw e
        }
        try cache.writeRef(revision, commit: info.commit)
        writeTreeCache(repo, commit: info.commit, cache: cache)
        let wanted = try Self.modelFiles(info.files, repo: repo, revision: revision, variant: variant)
        for (i, path) in wanted.enumerated() {
            _ = try fetch(repo, revision: info.commit, path: path, cache: cache, index: i + 1, count: wanted.count, progress: progress)
        }
        return cache.snapshot(info.commit)
    }

    /// `config.json` and the one weight file diffusers' `from_pretrained` would read from the repo's top level.
    static func modelFiles(_ files: [String], repo: String, revision: String, variant: String?) throws -> [String] {
        let top = Set(files.filter { !$0.contains("/") })
        guard top.contains("config.json") else {
            throw HubError.notAPipeline(repo: repo, revision: revision, detail: "nor a single diffusers model such as a VAE: it has no config.json at the top")
        }
        let infix = variant.map { ".\($0)" } ?? ""
        for ext in ["safetensors", "bin"] {
            let name = "diffusion_pytorch_model\(infix).\(ext)"
            if top.contains(name) { return ["config.json", name] }
        }
        throw HubError.notAPipeline(repo: repo, revision: revision,
                                    detail: "no diffusion_pytorch_model\(infix).safetensors or .bin at the top\(variant.map { " (variant \($0))" } ?? "")")
    }
}
