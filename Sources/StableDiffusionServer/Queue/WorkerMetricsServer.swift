import Hummingbird
import Logging
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
        router.get("/metrics") { _, _ -> Response in metrics.response }
        // The bound port, or why the listener ended before binding: whichever comes first.
        let (bound, report) = AsyncStream<Result<Int, any Error>>.makeStream()
        let app = Application(router: router, server: .guardedHTTP1(limits: ConnectionLimits(), metrics: metrics, logger: logger),
                              configuration: .init(address: .hostname(host, port: port), serverName: "sd-worker"),
                              onServerRunning: { channel in report.yield(.success(channel.localAddress?.port ?? 0)) }, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: logger))
        let task = Task {
            defer { report.yield(.failure(CancellationError())) }
            do { try await group.run() } catch {
                report.yield(.failure(error))
                throw error
            }
        }
        for await first in bound {
            do {
                return WorkerMetricsServer(port: try first.get(), group: group, task: task)
            } catch {
                task.cancel()
                throw error
            }
        }
        throw CancellationError()
    }

    public func stop() async {
        await group.triggerGracefulShutdown()
        _ = await task.result
    }
}
