import ArgumentParser
import Foundation
import StableDiffusion

/// `sd download`: fetch a diffusers pipeline from the Hugging Face Hub into the huggingface_hub cache
/// (HF_HUB_CACHE / HF_HOME, HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE as huggingface_hub reads them).
struct DownloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "download",
        abstract: "Download a diffusers pipeline from the Hugging Face Hub into its cache; print the snapshot folder.")

    @Argument(help: "Repo id owner/name, optionally owner/name@revision.")
    var repo: String

    @Option(help: "Branch, tag or commit (default: the one after @, else main).")
    var revision: String?

    @Option(help: "Weights variant, e.g. fp16 for *.fp16.safetensors.")
    var variant: String?

    func run() throws {
        let id = try HubRepoID(repo)
        let client = try HubClient()
        let folder = try client.snapshot(repo: id.id, revision: revision ?? id.revision ?? "main", variant: variant,
                                         progress: DownloadProgressBar.forStderr()?.update)
        print(folder.path)
    }
}

/// Per-file download progress on stderr: a bar with bytes, rate and ETA on a terminal, plain lines otherwise.
final class DownloadProgressBar: @unchecked Sendable {
    /// A bar, unless HF_HUB_DISABLE_PROGRESS_BARS silences it (as it does huggingface_hub's).
    static func forStderr() -> DownloadProgressBar? {
        let quiet = ["1", "ON", "YES", "TRUE"].contains((ProcessInfo.processInfo.environment["HF_HUB_DISABLE_PROGRESS_BARS"] ?? "").uppercased())
        return quiet ? nil : DownloadProgressBar()
    }

    private let interactive = isatty(STDERR_FILENO) != 0
    private var lastLine = Date()   // plain lines: each file's end, and every 2 s for long ones
    private let lock = NSLock()

    func update(_ p: HubDownloadProgress) {
        lock.lock(); defer { lock.unlock() }
        let size = p.totalBytes.map { " / \(Self.bytes($0))" } ?? ""
        let eta = p.etaSeconds.map { String(format: " ETA %.0fs", $0) } ?? ""
        let text = "[\(p.fileIndex)/\(p.fileCount)] \(p.path) \(Self.bytes(p.bytes))\(size) \(Self.bytes(Int64(p.bytesPerSecond)))/s\(p.finished ? "" : eta)"
        if interactive {
            let width = 24
            let filled = p.totalBytes.map { $0 > 0 ? Int(Int64(width) * p.bytes / $0) : width } ?? 0
            let bar = String(repeating: "#", count: min(width, filled)) + String(repeating: "-", count: max(0, width - filled))
            FileHandle.standardError.write(Data("\r\u{1B}[K[\(bar)] \(text)\(p.finished ? "\n" : "")".utf8))
        } else if p.finished || Date().timeIntervalSince(lastLine) >= 2 {
            lastLine = Date()
            FileHandle.standardError.write(Data("\(text)\(p.finished ? " done" : "")\n".utf8))
        }
    }

    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n), i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
    }
}
