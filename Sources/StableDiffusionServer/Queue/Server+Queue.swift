import Foundation
import Logging

extension StableDiffusionServer {
    /// A front of the shared queue (`sd serve --queue`): every request becomes a job there. With `worker`
    /// (`--model` given too) this process also runs jobs for its models; `localModel` (that model) is then the
    /// one requests naming none get while a worker holds it.
    public convenience init(queue: PostgresQueue, worker: QueueWorker?, localModel: ServedModel?, configuration: ServerConfiguration,
                            logger: Logger) {
        if let localModel { _ = queue.catalog.select(localModel.name) }
        self.init(store: PostgresJobStore(queue: queue, capacity: configuration.queueSize), catalog: queue.catalog, localModel: localModel,
                  metrics: queue.metrics, files: PostgresFileStore(queue: queue, lifetime: configuration.fileLifetimeSeconds), worker: worker, stopWorker: { await worker?.stop() }, configuration: configuration, logger: logger)
    }
}
