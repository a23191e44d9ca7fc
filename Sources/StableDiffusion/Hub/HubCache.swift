import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One repo's folder in the huggingface_hub cache, `models--owner--name/` with `blobs/`, `refs/`, `snapshots/`
/// and `.no_exist/`, laid out exactly as `hf_hub_download` does so both tools share it.
public struct HubCacheRepo: Sendable {
    public let cacheDirectory: URL
    public let repo: String
    /// `<cache>/models--owner--name`.
    public let folder: URL

    public init(cacheDirectory: URL, repo: String) {
        self.cacheDirectory = cacheDirectory
        self.repo = repo
        folder = cacheDirectory.appendingPathComponent((["models"] + repo.split(separator: "/").map(String.init)).joined(separator: "--"))
    }

    static func isCommitHash(_ s: String) -> Bool {
        s.utf8.count == 40 && s.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    public func blob(_ etag: String) -> URL { folder.appendingPathComponent("blobs/\(etag)") }
    public func snapshot(_ commit: String) -> URL { folder.appendingPathComponent("snapshots/\(commit)", isDirectory: true) }
    public func pointer(_ commit: String, _ path: String) -> URL { snapshot(commit).appendingPathComponent(path) }
    func noExistMarker(_ commit: String, _ path: String) -> URL { folder.appendingPathComponent(".no_exist/\(commit)/\(path)") }
    func lockFile(_ etag: String) -> URL {
        cacheDirectory.appendingPathComponent(".locks/\(folder.lastPathComponent)/\(etag).lock")
    }

    /// The commit a revision names: itself when it is a commit hash, else what `refs/<revision>` holds.
    public func commit(for revision: String) -> String? {
        if Self.isCommitHash(revision) { return revision }
        guard let text = try? String(contentsOf: folder.appendingPathComponent("refs/\(revision)"), encoding: .utf8) else { return nil }
        return text.isEmpty ? nil : text
    }

    /// `refs/<revision>` := commit (no newline), written atomically, only when it changes (as huggingface_hub).
    func writeRef(_ revision: String, commit: String) throws {
        guard revision != commit else { return }
        let ref = folder.appendingPathComponent("refs/\(revision)")
        if (try? String(contentsOf: ref, encoding: .utf8)) == commit { return }
        do {
            try FileManager.default.createDirectory(at: ref.deletingLastPathComponent(), withIntermediateDirectories: true)
            let tmp = ref.deletingLastPathComponent().appendingPathComponent("\(ref.lastPathComponent).\(UUID().uuidString.prefix(8).lowercased()).tmp")
            try Data(commit.utf8).write(to: tmp)
            if rename(tmp.path, ref.path) != 0 { throw HubError.cache(path: ref.path, detail: String(cString: strerror(errno))) }
        } catch let e as HubError { throw e } catch {
            throw HubError.cache(path: ref.path, detail: "cannot write ref: \(error.localizedDescription)")
        }
    }

    func isKnownMissing(_ commit: String, _ path: String) -> Bool {
        FileManager.default.fileExists(atPath: noExistMarker(commit, path).path)
    }

    /// An empty `.no_exist/<commit>/<path>`: the Hub said 404 for this file at this commit. Best effort, as upstream.
    func markMissing(_ commit: String, _ path: String) {
        let marker = noExistMarker(commit, path)
        try? FileManager.default.createDirectory(at: marker.deletingLastPathComponent(), withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: marker.path) { _ = FileManager.default.createFile(atPath: marker.path, contents: Data()) }
    }

    /// A file in a snapshot that resolves to an existing blob (a dangling link does not count).
    func hasFile(_ commit: String, _ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: pointer(commit, path).path, isDirectory: &isDir) && !isDir.boolValue
    }

    /// Files present in a cached snapshot, `/`-separated paths relative to it.
    func listSnapshot(_ commit: String) -> [String] {
        let root = snapshot(commit)
        guard let walker = FileManager.default.enumerator(atPath: root.path) else { return [] }
        var files: [String] = []
        while let rel = walker.nextObject() as? String {
            if hasFile(commit, rel) { files.append(rel) }
        }
        return files.sorted()
    }

    /// `snapshots/<commit>/<path>` -> `../../blobs/<etag>` (one more `../` per folder level), replacing what was there.
    /// Made under a temporary name and renamed over, so a reader never sees the path missing.
    func link(_ commit: String, _ path: String, etag: String) throws {
        let dst = pointer(commit, path)
        let depth = path.split(separator: "/").count - 1
        let target = String(repeating: "../", count: depth + 2) + "blobs/\(etag)"
        do {
            try FileManager.default.createDirectory(at: dst.deletingLastPathComponent(), withIntermediateDirectories: true)
            let tmp = dst.deletingLastPathComponent().appendingPathComponent(".\(dst.lastPathComponent).\(UUID().uuidString.prefix(8)).tmp")
            guard symlink(target, tmp.path) == 0 else {
                throw HubError.cache(path: dst.path, detail: "cannot create symlink: \(String(cString: strerror(errno)))")
            }
            if rename(tmp.path, dst.path) != 0 {
                let reason = String(cString: strerror(errno))
                unlink(tmp.path)
                throw HubError.cache(path: dst.path, detail: "cannot create symlink: \(reason)")
            }
        } catch let e as HubError { throw e } catch {
            throw HubError.cache(path: dst.path, detail: error.localizedDescription)
        }
    }

    /// `CACHEDIR.TAG` at the cache root, as huggingface_hub writes it, so backup tools skip the cache.
    func tagCacheDirectory() {
        let tag = cacheDirectory.appendingPathComponent("CACHEDIR.TAG")
        guard !FileManager.default.fileExists(atPath: tag.path) else { return }
        let text = "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by huggingface_hub.\n# For information about cache directory tags, see:\n#\thttps://bford.info/cachedir/\n"
        try? Data(text.utf8).write(to: tag, options: .atomic)
    }
}

/// An exclusive `flock` on `.locks/models--owner--name/<etag>.lock`, the lock huggingface_hub's filelock takes,
/// so a Python download and ours never write the same blob at once.
final class HubFileLock {
    private let fd: Int32
    init(_ url: URL) throws {
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        fd = open(url.path, O_RDWR | O_CREAT, 0o644)
        guard fd >= 0 else { throw HubError.cache(path: url.path, detail: "cannot open lock file: \(String(cString: strerror(errno)))") }
        while flock(fd, LOCK_EX) != 0 {
            if errno != EINTR { close(fd); throw HubError.cache(path: url.path, detail: "cannot lock: \(String(cString: strerror(errno)))") }
        }
    }
    deinit { flock(fd, LOCK_UN); close(fd) }
}
