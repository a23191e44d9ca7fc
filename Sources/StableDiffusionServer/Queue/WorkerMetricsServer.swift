import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// `sd worker --metrics-port`: a worker's own `GET /metrics` (the jobs it ran and their seconds, plus the queue's
/// series its maintenance loop refreshes), on a listener that serves nothing else. A worker has no other HTTP
/// port; without this its jobs show only in the fronts' series.
public final class WorkerMetricsServer: Sendable {
    /// The bound port (useful with port 0).
    public let port: Int
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    private init(port: Int, group: ServiceGroup, task: Task<Void, any Error>) {
        self.port = port
        self.group = group
        self.task = task
    }

    /// Binds `host:port` (the same connection limits as `sd serve`'s) and serves until `stop`; throws when the
    /// address cannot be bound.
    public static func start(queue: PostgresQueue, host: String, port: Int, logger: Logger) async throws -> WorkerMetricsServer {
        let metrics = queue.metrics
        let router = Router()
        router.add(middleware: RequestLogMiddleware(metrics: metrics))
        router.get("/metrics") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(bytes: metrics.text)))
        }
        let bound = BoundPort()
        let app = Application(router: router, server: .guardedHTTP1(limits: ConnectionLimits(), metrics: metrics, logger: logger),
                              configuration: .init(address: .hostname(host, port: port), serverName: "sd-worker"),
                              onServerRunning: { channel in bound.resolve(.success(channel.localAddress?.port ?? 0)) }, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: logger))
        let task = Task {
            do { try await group.run() } catch {
                bound.resolve(.failure(error))
                throw error
            }
            bound.resolve(.failure(CancellationError()))
        }
        do {
            return WorkerMetricsServer(port: try await bound.value, group: group, task: task)
        } catch {
            task.cancel()
            throw error
        }
    }

    public func stop() async {
        await group.triggerGracefulShutdown()
        _ = await task.result
    }
}

/// The port the listener bound, or why it could not: resolved once, by whichever comes first.
private final class BoundPort: @unchecked Sendable {
    private let lock = NSLock()
    private var result: Result<Int, any Error>?
    private var waiter: CheckedContinuation<Int, any Error>?

    func resolve(_ r: Result<Int, any Error>) {
        let w: CheckedContinuation<Int, any Error>? = lock.withLock {
            guard result == nil else { return nil }
            result = r
            defer { waiter = nil }
            return waiter
        }
        w?.resume(with: r)
    }

    var value: Int {
        get async throws {
            try await withCheckedThrowingContinuation { c in
                let done: Result<Int, any Error>? = lock.withLock {
                    if result == nil { waiter = c }
                    return result
                }
                if let done { c.resume(with: done) }
            }
        }
    }
}
