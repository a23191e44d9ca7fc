import Foundation

/// Where the PNGs served for OpenAI's `response_format=url` are kept for a short while, under random ids
/// (never a server file path): this process's memory (`FileStore`), or the shared queue's database
/// (`PostgresFileStore`), so that any front serves a URL another made.
protocol FileStoring: Sendable {
    func put(_ bytes: [UInt8]) async throws -> String
    func get(_ id: String) async -> [UInt8]?
}

extension FileStoring {
    /// A fresh random id.
    static func newID() -> String {
        var raw = [UInt8](repeating: 0, count: 16)
        for i in raw.indices { raw[i] = UInt8.random(in: 0...255) }
        return "img-" + raw.map { String(format: "%02x", $0) }.joined()
    }
}

/// The files in memory, bounded in count and bytes: the oldest go first.
final class FileStore: FileStoring, @unchecked Sendable {
    private let lifetime: Double
    private let maxBytes = 256 << 20
    private let lock = NSLock()
    private var entries: [(id: String, bytes: [UInt8], expires: Date)] = []

    init(lifetime: Double) { self.lifetime = lifetime }

    func put(_ bytes: [UInt8]) -> String {
        let id = Self.newID()
        lock.withLock {
            purge()
            entries.append((id, bytes, Date().addingTimeInterval(lifetime)))
            var total = entries.reduce(0) { $0 + $1.bytes.count }
            while total > maxBytes, entries.count > 1 {
                total -= entries.removeFirst().bytes.count
            }
        }
        return id
    }

    func get(_ id: String) -> [UInt8]? {
        lock.withLock {
            purge()
            return entries.first { $0.id == id }?.bytes
        }
    }

    private func purge() {
        let now = Date()
        entries.removeAll { $0.expires < now }
    }
}
