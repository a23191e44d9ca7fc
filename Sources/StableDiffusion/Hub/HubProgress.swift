import Foundation

/// Download progress of one file, reported while its bytes arrive (at most ~10 times a second) and once at its end.
public struct HubDownloadProgress: Sendable {
    public let repo: String
    /// The file's path in the repo, e.g. `unet/diffusion_pytorch_model.safetensors`.
    public let path: String
    /// 1-based position among the files this snapshot downloads, and their count.
    public let fileIndex: Int
    public let fileCount: Int
    /// Bytes of the file on disk so far (a resumed download starts above zero).
    public let bytes: Int64
    /// The file's size, when the Hub said.
    public let totalBytes: Int64?
    /// Bytes per second over this transfer (resumed bytes excluded).
    public let bytesPerSecond: Double
    public let finished: Bool

    /// Seconds left at the current rate, when known.
    public var etaSeconds: Double? {
        guard let total = totalBytes, bytesPerSecond > 0 else { return nil }
        return Double(max(0, total - bytes)) / bytesPerSecond
    }
}

/// Called on the download's network thread, not the caller's: keep it short and thread-safe.
public typealias HubProgressHandler = @Sendable (HubDownloadProgress) -> Void
