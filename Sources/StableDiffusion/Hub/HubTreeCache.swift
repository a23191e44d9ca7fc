import Foundation

/// huggingface_hub's tree cache, `models--owner--name/trees/<commit>.json`: the repo's full file listing at a commit,
/// which snapshot_download writes and reads (and diffusers reads offline) to know what a complete snapshot holds.
/// Written in the same format (version 1, `indent=1`, ASCII-escaped) so either tool can use the other's.
extension HubClient {
    struct TreeEntry {
        let path: String
        let size: Int64
        let blobID: String
        let lfsSHA256: String?
        let lfsSize: Int64?
        let xetHash: String?
    }

    func treeCacheFile(_ cache: HubCacheRepo, _ commit: String) -> URL { cache.folder.appendingPathComponent("trees/\(commit).json") }

    /// The cached listing's paths, nil when there is none (or it is in an unknown format).
    func cachedTree(_ cache: HubCacheRepo, _ commit: String) -> [String]? {
        guard let data = FileManager.default.contents(atPath: treeCacheFile(cache, commit).path),
              let json = (try? JSONValue.parse(data, file: "trees/\(commit).json"))?.objectValue,
              json["format_version"]?.intValue == 1, let files = json["files"]?.objectValue else { return nil }
        return files.keys.sorted()
    }

    /// `GET /api/models/{repo}/tree/{commit}?recursive=true&expand=false`, following `Link: <...>; rel="next"` pages,
    /// written to `trees/<commit>.json` unless already there. Best effort, as upstream: failures are ignored.
    func writeTreeCache(_ repo: String, commit: String, cache: HubCacheRepo) {
        let file = treeCacheFile(cache, commit)
        guard !FileManager.default.fileExists(atPath: file.path),
              var next = URL(string: environment.endpoint.absoluteString + "/api/models/\(repo)/tree/\(commit)?recursive=true&expand=false") else { return }
        var entries: [TreeEntry] = []
        for _ in 0..<10_000 {
            var body = Data()
            guard let r = try? request("GET", next, timeout: environment.metadataTimeout, stopAtForeignRedirect: false, onData: { body.append($0) }),
                  r.status == 200, let items = (try? JSONValue.parse(body, file: "tree"))?.arrayValue else { return }
            for item in items {
                guard let o = item.objectValue, o["type"]?.stringValue == "file", let path = o["path"]?.stringValue,
                      let size = o["size"]?.intValue, let oid = o["oid"]?.stringValue else { continue }
                let lfs = o["lfs"]?.objectValue
                entries.append(TreeEntry(path: path, size: Int64(size), blobID: oid, lfsSHA256: lfs?["oid"]?.stringValue,
                                         lfsSize: lfs?["size"]?.intValue.map { Int64($0) }, xetHash: o["xetHash"]?.stringValue))
            }
            guard let link = r["Link"], let url = Self.nextPage(link, relativeTo: next) else { break }
            next = url
        }
        var text = "{\n \"format_version\": 1,\n \"files\": {"
        for (i, e) in entries.sorted(by: { $0.path.unicodeScalars.lexicographicallyPrecedes($1.path.unicodeScalars) }).enumerated() {
            var fields = ["\"size\": \(e.size)", "\"blob_id\": \(Self.jsonString(e.blobID))"]
            if let sha = e.lfsSHA256 { fields += ["\"lfs_sha256\": \(Self.jsonString(sha))", "\"lfs_size\": \(e.lfsSize.map(String.init) ?? "null")"] }
            if let xet = e.xetHash { fields.append("\"xet_hash\": \(Self.jsonString(xet))") }
            text += (i == 0 ? "\n" : ",\n") + "  \(Self.jsonString(e.path)): {\n   " + fields.joined(separator: ",\n   ") + "\n  }"
        }
        text += entries.isEmpty ? "}\n}" : "\n }\n}"
        let tmp = file.deletingLastPathComponent().appendingPathComponent("\(UUID().uuidString).tmp")
        do {
            try FileManager.default.createDirectory(at: tmp.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: tmp)
            if rename(tmp.path, file.path) != 0 { try? FileManager.default.removeItem(at: tmp) }
        } catch {
            try? FileManager.default.removeItem(at: tmp)
        }
    }

    /// The `rel="next"` URL of an RFC 8288 Link header.
    static func nextPage(_ link: String, relativeTo base: URL) -> URL? {
        for part in link.split(separator: ",") {
            let pieces = part.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard let target = pieces.first, target.hasPrefix("<"), target.hasSuffix(">"),
                  pieces.dropFirst().contains(where: { $0.replacingOccurrences(of: "\"", with: "") == "rel=next" }) else { continue }
            return URL(string: String(target.dropFirst().dropLast()), relativeTo: base)?.absoluteURL
        }
        return nil
    }

    /// Python's `json.dumps(s)` (ensure_ascii): `"`, `\` and control characters escaped, non-ASCII as \uXXXX.
    static func jsonString(_ s: String) -> String {
        var out = "\""
        for unit in s.utf16 {
            switch unit {
            case 0x22: out += "\\\""
            case 0x5C: out += "\\\\"
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0x08: out += "\\b"
            case 0x0C: out += "\\f"
            case 0x20..<0x7F: out.unicodeScalars.append(Unicode.Scalar(UInt8(unit)))
            default: out += String(format: "\\u%04x", unit)
            }
        }
        return out + "\""
    }
}
