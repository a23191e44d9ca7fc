import Foundation
import Logging

extension StableDiffusionServer {
    /// A front of the shared queue (`sd serve --queue`): every request becomes a job there. With `worker`
    /// (`--model` given too) this process also runs jobs for its models; `defaultModel` is the one requests
    /// naming none get while a worker holds it.
    public convenience init(queue: PostgresQueue, worker: QueueWorker?, defaultModel: String?, configuration: ServerConfiguration,
                            logger: Logger) {
        if let defaultModel { _ = queue.catalog.select(defaultModel) }
        self.init(store: PostgresJobStore(queue: queue, capacity: configuration.queueSize), catalog: queue.catalog, metrics: queue.metrics,
                  worker: worker, stopWorker: { await worker?.stop() }, configuration: configuration, logger: logger)
    }
}
