import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension HubClient {
    /// Streams a blob into `blobs/<etag>.incomplete` (resuming it with `Range: bytes=N-`), checks its size and, for
    /// LFS files, its sha256, then renames it to `blobs/<etag>`. On a network failure the `.incomplete` file stays
    /// for the next run; a hash mismatch removes it.
    func downloadBlob(_ repo: String, revision: String, path: String, meta: HubFileMetadata, cache: HubCacheRepo,
                      index: Int, count: Int, progress: HubProgressHandler?) throws {
        let blob = cache.blob(meta.etag)
        let partial = URL(fileURLWithPath: blob.path + ".incomplete")
        var failures = 0
        // The sha256 is computed as bytes arrive (a resumed file's earlier bytes are read back once), so checking
        // a multi-GB file costs no second pass.
        var hash = RunningHash()
        while true {
            let before = Self.fileSize(partial)
            do {
                try transfer(repo, revision: revision, path: path, meta: meta, to: partial, hash: &hash, index: index, count: count, progress: progress)
                break
            } catch let e as HubTransportError {
                // Like http_get: retry, resuming, while attempts remain; any progress resets the count.
                if Self.fileSize(partial) > before { failures = 0 }
                failures += 1
                if failures > maxRetries { throw HubError.network(repo: repo, revision: revision, path: path, detail: e.detail) }
                Thread.sleep(forTimeInterval: retryDelay)
            }
        }
        let size = Self.fileSize(partial)
        if let expected = meta.size, size != expected {
            if size > expected { unlink(partial.path) }
            throw HubError.sizeMismatch(repo: repo, revision: revision, path: path, expected: expected, actual: size)
        }
        if meta.isLFS {
            let actual = hash.bytes == size ? hash.sha.finalize() : try SHA256.hex(ofFile: partial.path)
            if actual != meta.etag {
                unlink(partial.path)
                throw HubError.corrupted(repo: repo, revision: revision, path: path, expected: meta.etag, actual: actual)
            }
        }
        if rename(partial.path, blob.path) != 0 {
            throw HubError.cache(path: blob.path, detail: "cannot move the download into place: \(String(cString: strerror(errno)))")
        }
    }

    static func fileSize(_ url: URL) -> Int64 {
        var st = stat()
        return stat(url.path, &st) == 0 ? Int64(st.st_size) : 0
    }

    /// One GET attempt, appending to `partial` from its current size.
    private func transfer(_ repo: String, revision: String, path: String, meta: HubFileMetadata, to partial: URL,
                          hash: inout RunningHash, index: Int, count: Int, progress: HubProgressHandler?) throws {
        var resume = Self.fileSize(partial)
        if let expected = meta.size, resume > expected { resume = 0 }
        let fd = open(partial.path, O_WRONLY | O_CREAT, 0o666)   // 0o666 & ~umask, the mode huggingface_hub gives blobs
        guard fd >= 0 else { throw HubError.cache(path: partial.path, detail: "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        if ftruncate(fd, off_t(resume)) != 0 || lseek(fd, off_t(resume), SEEK_SET) < 0 {
            throw HubError.cache(path: partial.path, detail: "cannot seek: \(String(cString: strerror(errno)))")
        }
        if meta.isLFS && hash.bytes != resume { try hash.restart(from: partial, upTo: resume) }
        if let expected = meta.size, resume == expected { return }
        var running = hash
        defer { hash = running }
        var written = resume
        var total = meta.size
        let start = Date()
        var lastReport = Date.distantPast
        func report(_ finished: Bool) {
            guard let progress, finished || Date().timeIntervalSince(lastReport) >= 0.1 else { return }
            lastReport = Date()
            let seconds = Date().timeIntervalSince(start)
            progress(HubDownloadProgress(repo: repo, path: path, fileIndex: index, fileCount: count, bytes: written, totalBytes: total,
                                         bytesPerSecond: seconds > 0 ? Double(written - resume) / seconds : 0, finished: finished))
        }
        var status = 0
        let r = try request("GET", meta.location, timeout: environment.downloadTimeout, stopAtForeignRedirect: false, onResponse: { r in
            status = r.status
            if r.status == 200 && resume > 0 {
                // The server ignored the Range: start over rather than append a second copy.
                guard ftruncate(fd, 0) == 0, lseek(fd, 0, SEEK_SET) == 0 else { throw HubError.cache(path: partial.path, detail: "cannot truncate") }
                resume = 0
                written = 0
                running = RunningHash()
            } else if r.status == 206, let range = r["Content-Range"], !range.hasPrefix("bytes \(resume)-") {
                throw HubError.badResponse(repo: repo, revision: revision, path: path, detail: "asked for bytes \(resume)- but got \(range)")
            } else if r.status != 200 && r.status != 206 {
                return
            }
            if total == nil, let len = r["Content-Length"].flatMap(Int64.init) { total = len + resume }
            report(false)
        }, onData: { data in
            guard status == 200 || status == 206 else { return }
            try data.withUnsafeBytes { (p: UnsafeRawBufferPointer) in
                guard let base = p.baseAddress else { return }
                var offset = 0
                while offset < p.count {
                    let n = write(fd, base + offset, p.count - offset)
                    if n < 0 { if errno == EINTR { continue }; throw HubError.cache(path: partial.path, detail: "write failed: \(String(cString: strerror(errno)))") }
                    offset += n
                }
            }
            written += Int64(data.count)
            if meta.isLFS { running.sha.update(data); running.bytes += Int64(data.count) }
            report(false)
        }, extraHeaders: resume > 0 ? ["Range": "bytes=\(resume)-"] : [:], sendToken: meta.sendToken)
        if r.status == 416, let expected = meta.size, resume == expected { return }
        guard r.status == 200 || r.status == 206 else { throw error(for: r, repo: repo, revision: revision, path: path) }
        report(true)
    }
}

/// A sha256 over the first `bytes` bytes of a partial download.
struct RunningHash {
    var sha = SHA256()
    var bytes: Int64 = 0

    /// Re-hashes the file's first `count` bytes (a download resumed from an earlier run).
    mutating func restart(from url: URL, upTo count: Int64) throws {
        self = RunningHash()
        guard count > 0, let handle = FileHandle(forReadingAtPath: url.path) else { return }
        defer { try? handle.close() }
        while bytes < count, let chunk = try handle.read(upToCount: Int(min(8 << 20, count - bytes))), !chunk.isEmpty {
            sha.update(chunk)
            bytes += Int64(chunk.count)
        }
    }
}
