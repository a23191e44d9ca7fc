import Foundation
import NIOCore
import PostgresNIO

/// OpenAI's `response_format=url` files in the shared queue's database (`sd_files`), so a URL one front
/// made is served by any front; expired rows are deleted by the maintenance loop.
final class PostgresFileStore: FileStoring, @unchecked Sendable {
    private let queue: PostgresQueue
    private let lifetime: Double

    init(queue: PostgresQueue, lifetime: Double) {
        self.queue = queue
        self.lifetime = lifetime
    }

    func put(_ bytes: [UInt8]) async throws -> String {
        let id = Self.newID()
        do {
            try await queue.client.query("""
                INSERT INTO sd_files (id, png, expires_at) VALUES (\(id), \(ByteBuffer(bytes: bytes)), now() + make_interval(secs => \(lifetime)))
                """, logger: queue.logger)
        } catch {
            throw PostgresJobStore.unreachable(error)
        }
        return id
    }

    func get(_ id: String) async -> [UInt8]? {
        var png: Data?
        do {
            for try await p in try await queue.client.query("SELECT png FROM sd_files WHERE id = \(id) AND expires_at > now()",
                                                            logger: queue.logger).decode(Data.self) { png = p }
        } catch {
            queue.logger.warning("cannot read a file", metadata: ["error": "\(error)"])
        }
        return png.map { [UInt8]($0) }
    }
}
