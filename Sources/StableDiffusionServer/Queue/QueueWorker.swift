import Foundation
import Logging
import StableDiffusion

/// A worker on the shared queue (`sd worker`, or the local worker of `sd serve --queue --model`): the
/// models it holds, its claims and heartbeat, and the generation thread that runs what it claims.
public final class QueueWorker: Sendable {
    private let source: PostgresJobSource
    private let worker: GenerationWorker

    private init(source: PostgresJobSource, worker: GenerationWorker) {
        self.source = source
        self.worker = worker
    }

    /// Registers the models with the queue and starts claiming jobs for them.
    public static func start(queue: PostgresQueue, models: [ServedModel], previewVAE: (any LatentAutoencoder)? = nil,
                             previewEvery: Int = 1, logger: Logger) async throws -> QueueWorker {
        let source = PostgresJobSource(queue: queue, models: models.map(\.descriptor))
        try await source.start()
        let worker = GenerationWorker(models: models, source: source, metrics: queue.metrics, logger: logger,
                                      previewVAE: previewVAE, previewEvery: previewEvery)
        logger.info("worker started", metadata: ["name": "\(queue.settings.name)", "models": "\(models.map(\.name).joined(separator: ", "))"])
        return QueueWorker(source: source, worker: worker)
    }

    /// Stops claiming; a running job is stopped and given back to the queue. Waits for that, bounded.
    public func stop(timeout: Double = 30) async {
        source.stop()
        let deadline = Date().addingTimeInterval(timeout)
        while !source.isIdle, Date() < deadline { try? await Task.sleep(nanoseconds: 50_000_000) }
        await source.endHeartbeat()
    }
}
