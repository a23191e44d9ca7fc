import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a HEAD on `/{repo}/resolve/{revision}/{path}` says about a file (huggingface_hub's `HfFileMetadata`).
struct HubFileMetadata {
    let commit: String
    /// `X-Linked-Etag` (LFS: the sha256) or `ETag` (git blob sha1), quotes and `W/` removed: the blob's name.
    let etag: String
    let size: Int64?
    /// Where to GET it: the CDN location of a cross-host redirect, else the resolve URL.
    let location: URL
    /// False when `location` is on another host: the token must not go there.
    let sendToken: Bool

    var isLFS: Bool { etag.utf8.count == 64 && etag.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) } }
}

extension HubClient {
    /// `_normalize_etag`: `W/"abc"` -> `abc`.
    static func normalizeETag(_ s: String?) -> String? {
        guard var s else { return nil }
        while let c = s.first, c == "W" || c == "/" { s.removeFirst() }
        return s.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
    }

    func metadata(_ repo: String, revision: String, path: String, cache: HubCacheRepo) throws -> HubFileMetadata {
        guard let url = resolveURL(repo, revision, path) else {
            throw HubError.badResponse(repo: repo, revision: revision, path: path, detail: "cannot build the resolve URL")
        }
        let r = try request("HEAD", url, timeout: environment.metadataTimeout, stopAtForeignRedirect: true)
        if r.status >= 400 {
            // As huggingface_hub: a 404 for a file of an existing commit is remembered in .no_exist/<commit>/<path>.
            if r["X-Error-Code"] == "EntryNotFound", let commit = r["X-Repo-Commit"], HubCacheRepo.isCommitHash(commit) {
                cache.markMissing(commit, path)
                try? cache.writeRef(revision, commit: commit)
            }
            throw error(for: r, repo: repo, revision: revision, path: path)
        }
        guard let commit = r["X-Repo-Commit"], HubCacheRepo.isCommitHash(commit) else {
            throw HubError.badResponse(repo: repo, revision: revision, path: path, detail: "no X-Repo-Commit header")
        }
        guard let etag = Self.normalizeETag(r["X-Linked-Etag"] ?? r["ETag"]), !etag.isEmpty, !etag.contains("/") else {
            throw HubError.badResponse(repo: repo, revision: revision, path: path, detail: "no usable ETag header")
        }
        let size = (r["X-Linked-Size"] ?? (r.isRedirect ? nil : r["Content-Length"])).flatMap { Int64($0) }
        var location = r.url
        var sendToken = true
        if r.isRedirect, let l = r["Location"], let target = URL(string: l, relativeTo: r.url)?.absoluteURL {
            location = target
            sendToken = HubOrigin.isSameOrHub(r.url, target, endpoint: environment.endpoint)
        }
        return HubFileMetadata(commit: commit, etag: etag, size: size, location: location, sendToken: sendToken)
    }

    /// huggingface_hub's `_validate_relative_filename`: a repo's file name must stay inside the snapshot folder.
    static func validate(_ path: String, repo: String, revision: String) throws {
        let parts = path.replacingOccurrences(of: "\\", with: "/").split(separator: "/", omittingEmptySubsequences: false)
        if path.isEmpty || path.hasPrefix("/") || path.hasPrefix("\\") || parts.contains("..") || parts.contains("") || parts.contains(".")
            || (parts.first?.dropFirst().first == ":") {
            throw HubError.badResponse(repo: repo, revision: revision, path: path, detail: "unsafe file name (absolute, empty segment or '..')")
        }
    }

    /// One file of a revision in the cache, downloaded when missing (huggingface_hub's `hf_hub_download`).
    /// Returns nil when the file does not exist in the repo: the Hub said 404 now, or `.no_exist` says so already.
    public func file(repo: String, revision: String = "main", path: String, progress: HubProgressHandler? = nil) throws -> URL? {
        try HubRepoID.validate(repo: repo, revision: revision)
        let cache = HubCacheRepo(cacheDirectory: environment.cacheDirectory, repo: repo)
        // A commit never changes: a file known absent at it needs no request.
        if HubCacheRepo.isCommitHash(revision), cache.isKnownMissing(revision, path) { return nil }
        do {
            return try fetch(repo, revision: revision, path: path, cache: cache, index: 1, count: 1, progress: progress)
        } catch HubError.fileNotFound {
            return nil
        } catch let e as HubError {
            // Offline or unreachable: a file known to be absent is an answer, not an error.
            if case .notCached = e, let commit = cache.commit(for: revision), cache.isKnownMissing(commit, path) { return nil }
            throw e
        }
    }

    /// Fetches `path` at `revision` into the cache and returns its snapshot path.
    func fetch(_ repo: String, revision: String, path: String, cache: HubCacheRepo, index: Int, count: Int,
               progress: HubProgressHandler?) throws -> URL {
        try Self.validate(path, repo: repo, revision: revision)
        // A commit is immutable: a file already in its snapshot needs no request.
        if HubCacheRepo.isCommitHash(revision), cache.hasFile(revision, path) { return cache.pointer(revision, path) }
        func fromCache(_ offline: Bool, _ detail: String?) throws -> URL {
            if let commit = cache.commit(for: revision), cache.hasFile(commit, path) { return cache.pointer(commit, path) }
            throw HubError.notCached(repo: repo, revision: revision, path: path, cache: environment.cacheDirectory.path, offline: offline, detail: detail)
        }
        if environment.offline { return try fromCache(true, nil) }
        let meta: HubFileMetadata
        do {
            meta = try metadata(repo, revision: revision, path: path, cache: cache)
        } catch let e as HubTransportError {
            return try fromCache(false, e.detail)
        } catch let e as HubError {
            // As hf_hub_download: a refusal or server error (401, 5xx) still lets a cached copy answer; a file or
            // revision the Hub says does not exist does not.
            switch e {
            case .fileNotFound, .revisionNotFound: throw e
            default:
                if let commit = cache.commit(for: revision), cache.hasFile(commit, path) { return cache.pointer(commit, path) }
                throw e
            }
        }
        let pointer = cache.pointer(meta.commit, path)
        if cache.hasFile(meta.commit, path) { try? cache.writeRef(revision, commit: meta.commit); return pointer }
        do {
            try FileManager.default.createDirectory(at: cache.blob(meta.etag).deletingLastPathComponent(), withIntermediateDirectories: true)
        } catch {
            throw HubError.cache(path: cache.folder.path, detail: "cannot create: \(error.localizedDescription)")
        }
        cache.tagCacheDirectory()
        try cache.writeRef(revision, commit: meta.commit)
        let lock = try HubFileLock(cache.lockFile(meta.etag))
        defer { withExtendedLifetime(lock) {} }
        // Another download (thread or process) may have finished it while we waited for the lock.
        if cache.hasFile(meta.commit, path) { return pointer }
        if !FileManager.default.fileExists(atPath: cache.blob(meta.etag).path) {
            try downloadBlob(repo, revision: revision, path: path, meta: meta, cache: cache, index: index, count: count, progress: progress)
        }
        try cache.link(meta.commit, path, etag: meta.etag)
        return pointer
    }
}
