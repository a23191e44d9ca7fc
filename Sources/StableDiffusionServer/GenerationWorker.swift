import Foundation
import Logging
import StableDiffusion

/// Runs jobs from a `JobSource` one at a time on a thread of its own (the pipelines are synchronous and
/// use every core), on the models this process loaded.
final class GenerationWorker: @unchecked Sendable {
    private let models: [String: ServedModel]
    private let defaultModel: ServedModel
    private let source: any JobSource
    private let metrics: ServerMetrics
    private let logger: Logger
    /// The live-preview decoder and its interval (`ServerConfiguration.previewVAE`, `previewEvery`).
    private let previewVAE: (any LatentAutoencoder)?
    private let previewEvery: Int

    /// Starts the thread; it ends when `source.next()` returns nil.
    init(models: [ServedModel], source: any JobSource, metrics: ServerMetrics, logger: Logger, previewVAE: (any LatentAutoencoder)? = nil,
         previewEvery: Int = 1) {
        precondition(!models.isEmpty, "a worker needs a model")
        self.models = Dictionary(models.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        defaultModel = models[0]
        self.source = source
        self.metrics = metrics
        self.logger = logger
        self.previewVAE = previewVAE
        self.previewEvery = previewEvery
        let thread = Thread { [self] in self.loop() }
        thread.name = "sd-generation"
        thread.stackSize = 16 << 20  // the pipelines recurse through the networks; the default 512 KiB is tight
        thread.start()
    }

    private func loop() {
        while let job = source.next() { execute(job) }
    }

    private func execute(_ job: Job) {
        metrics.running.set(Double(1))
        job.started()
        let start = Date()
        let result: Result<GenerationOutput, any Error>
        if job.isCancelled {
            result = .failure(APIError.cancelled)
        } else {
            let model = job.request.model.flatMap { models[$0] } ?? defaultModel
            let previewVAE = self.previewVAE, every = previewEvery
            result = Result {
                try model.generate(job.request, interruption: job.interruption) { image, progress in
                    if let previewVAE { job.decodePreview(image: image, progress, vae: previewVAE, every: every) }
                    return job.report(image: image, progress)
                }
            }
        }
        let seconds = Date().timeIntervalSince(start)
        metrics.running.set(Double(0))
        metrics.generationSeconds.record(seconds)
        switch result {
        case .success(let out) where out.interrupted || job.isCancelled: metrics.jobs(.cancelled).increment()
        case .success: metrics.jobs(.done).increment()
        case .failure: metrics.jobs(.failed).increment()
        }
        logger.info("job finished", metadata: ["pipeline": "\(job.request.task.pipelineName)", "images": "\(job.request.count)",
                                               "seconds": "\(String(format: "%.3f", seconds))", "outcome": "\(Self.outcome(result))"])
        source.finished(job, result, seconds: seconds)
    }

    private static func outcome(_ r: Result<GenerationOutput, any Error>) -> String {
        switch r {
        case .success(let o): return o.interrupted ? "interrupted" : "done"
        case .failure(let e): return "failed: \(e)"
        }
    }
}
