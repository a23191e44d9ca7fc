import Foundation

extension HubClient {
    /// The cached snapshot folder of a diffusers pipeline repo at `revision`, downloading what is missing: the files
    /// `DiffusersFileSelection` picks for `variant`. The folder loads with `StableDiffusionComponents(directory:variant:)`.
    /// Offline (`HF_HUB_OFFLINE`) or when the Hub cannot be reached, the cached snapshot of the revision is used.
    public func snapshot(repo: String, revision: String = "main", variant: String? = nil,
                         progress: HubProgressHandler? = nil) throws -> URL {
        try HubRepoID.validate(repo: repo, revision: revision)
        let cache = HubCacheRepo(cacheDirectory: environment.cacheDirectory, repo: repo)
        if environment.offline { return try cachedSnapshot(cache, revision: revision, variant: variant, offline: true, cause: nil) }
        let info: (commit: String, files: [String])
        do {
            // A commit with its listing cached needs no API call (as snapshot_download): fully cached, no request at all.
            if HubCacheRepo.isCommitHash(revision), let files = cachedTree(cache, revision) {
                info = (revision, files)
            } else {
                info = try repoInfo(repo, revision: revision)
            }
        } catch let e as HubError {
            // As snapshot_download: a missing revision is final; any other failure (no network, 401, 5xx) falls back
            // to the cache and is reported only when the cache does not have the snapshot.
            if case .revisionNotFound = e { throw e }
            return try cachedSnapshot(cache, revision: revision, variant: variant, offline: false, cause: e)
        }
        try cache.writeRef(revision, commit: info.commit)
        writeTreeCache(repo, commit: info.commit, cache: cache)
        let index: URL
        do {
            index = try fetch(repo, revision: info.commit, path: "model_index.json", cache: cache, index: 1, count: 1, progress: progress)
        } catch HubError.fileNotFound {
            throw HubError.notAPipeline(repo: repo, revision: revision, detail: "it has no model_index.json (not a diffusers pipeline repo)")
        }
        let files = try select(repo, revision: revision, files: info.files, modelIndex: index, variant: variant)
        let wanted = files.filter { $0 != "model_index.json" }
        for (i, path) in wanted.enumerated() {
            _ = try fetch(repo, revision: info.commit, path: path, cache: cache, index: i + 1, count: wanted.count, progress: progress)
        }
        return cache.snapshot(info.commit)
    }

    /// `snapshot(repo:revision:variant:progress:)` for a parsed `owner/name[@revision]` (default revision `main`).
    public func snapshot(_ repo: HubRepoID, variant: String? = nil, progress: HubProgressHandler? = nil) throws -> URL {
        try snapshot(repo: repo.id, revision: repo.revision ?? "main", variant: variant, progress: progress)
    }

    private func select(_ repo: String, revision: String, files: [String], modelIndex: URL, variant: String?) throws -> [String] {
        guard let data = FileManager.default.contents(atPath: modelIndex.path),
              let object = (try? JSONValue.parse(data, file: modelIndex.path))?.objectValue else {
            throw HubError.notAPipeline(repo: repo, revision: revision, detail: "model_index.json is not a JSON object")
        }
        do {
            return try DiffusersFileSelection.select(files: files, modelIndex: object, variant: variant)
        } catch DiffusersFileSelection.Failure.noVariant(let v) {
            throw HubError.notAPipeline(repo: repo, revision: revision, detail: "no weights of variant \"\(v)\" (files named *.\(v).safetensors or *.\(v).bin)")
        }
    }

    /// The snapshot already in the cache, if it holds model_index.json and weights for every component it selects.
    private func cachedSnapshot(_ cache: HubCacheRepo, revision: String, variant: String?, offline: Bool, cause: HubError?) throws -> URL {
        func missing(_ path: String?, _ detail: String?) -> HubError {
            // With the Hub reachable but refusing (401, 404 repo), its answer is the useful error.
            if let cause, !offline, case .network = cause {} else if let cause, !offline { return cause }
            let why = [detail, cause.map { "\($0)" }].compactMap { $0 }.joined(separator: "; ")
            return .notCached(repo: cache.repo, revision: revision, path: path, cache: environment.cacheDirectory.path,
                              offline: offline, detail: why.isEmpty ? nil : why)
        }
        guard let commit = cache.commit(for: revision), FileManager.default.fileExists(atPath: cache.snapshot(commit).path) else {
            throw missing(nil, "no snapshot of this revision")
        }
        guard cache.hasFile(commit, "model_index.json") else { throw missing("model_index.json", nil) }
        // The repo's listing from trees/<commit>.json when a download left one, so a missing file is named exactly.
        let files = cachedTree(cache, commit) ?? cache.listSnapshot(commit)
        let chosen: [String]
        do {
            chosen = try select(cache.repo, revision: revision, files: files, modelIndex: cache.pointer(commit, "model_index.json"), variant: variant)
        } catch let e as HubError {
            throw missing(nil, "\(e)")
        }
        if let absent = chosen.first(where: { !cache.hasFile(commit, $0) }) { throw missing(absent, nil) }
        // Every component folder diffusers would fill must have something cached.
        if let data = FileManager.default.contents(atPath: cache.pointer(commit, "model_index.json").path),
           let object = (try? JSONValue.parse(data, file: "model_index.json"))?.objectValue {
            for (key, value) in object.sorted(by: { $0.key < $1.key }) where !key.hasPrefix("_") && !DiffusersFileSelection.skippedComponents.contains(key) {
                guard let pair = value.arrayValue, pair.count == 2, pair[0] != .null, pair[1] != .null else { continue }
                if !chosen.contains(where: { $0.hasPrefix("\(key)/") }) { throw missing("\(key)/", "component \(key) has no cached files") }
                // A model folder (it has config.json) needs its weights too.
                if chosen.contains("\(key)/config.json"),
                   !chosen.contains(where: { $0.hasPrefix("\(key)/") && ($0.hasSuffix(".safetensors") || $0.hasSuffix(".bin")) }) {
                    throw missing("\(key)/", "component \(key) has no cached weights" + (variant.map { " of variant \($0)" } ?? ""))
                }
            }
        }
        return cache.snapshot(commit)
    }
}
