import Foundation
import Logging
import StableDiffusion

/// One queued generation: cancellation, progress for /progress, and the result once done.
final class Job: @unchecked Sendable {
    let request: GenerationRequest
    private let lock = NSLock()
    private var cancelled = false
    private var result: Result<GenerationOutput, any Error>?
    private var waiters: [CheckedContinuation<Result<GenerationOutput, any Error>, Never>] = []
    // Progress (guarded by lock).
    private(set) var imageIndex = 0
    private(set) var step = 0
    private(set) var totalSteps = 0
    private(set) var startedAt: Date?
    /// The last step's report (its latents feed the live preview).
    private var lastProgress: PipelineProgress?
    /// The last preview decoded on the worker (with `--preview-vae`) and its id.
    private var decodedPreview: (png: [UInt8], id: Int)?

    init(request: GenerationRequest) { self.request = request }

    /// A1111's Interrupt for this job: the picture being drawn stops after its step and is returned.
    let interruption = PipelineInterruption()

    var isCancelled: Bool { lock.withLock { cancelled } }
    /// Nothing more is wanted (the client left, the server stops): the pipeline stops without a picture.
    func cancel() { lock.withLock { cancelled = true } }

    func started() { lock.withLock { startedAt = Date() } }

    /// Records progress; false asks the pipeline to stop.
    func report(image: Int, _ p: PipelineProgress) -> Bool {
        lock.withLock {
            imageIndex = image
            step = p.step
            totalSteps = p.totalSteps
            lastProgress = p
            return !cancelled
        }
    }

    var snapshot: (image: Int, step: Int, steps: Int, started: Date?) { lock.withLock { (imageIndex, step, totalSteps, startedAt) } }

    /// Decodes the live preview with `vae` on the worker thread, every `every` steps and at the last (the
    /// decode takes the worker's time, as AUTOMATIC1111's does; readers of /progress never wait for it).
    func decodePreview(image: Int, _ p: PipelineProgress, vae: any LatentAutoencoder, every: Int) {
        guard p.step % max(every, 1) == 0 || p.step == p.totalSteps, let latents = p.latents,
              let picture = try? LatentPreview.decoded(latents, vae: vae), let png = try? picture.pngData() else { return }
        lock.withLock { decodedPreview = (png, image * 10_000 + p.step) }
    }

    /// The preview of the picture being drawn and a number that changes with it: the decoded one with
    /// `--preview-vae`, else the cheap linear one (`LatentPreview`).
    func preview() -> (png: [UInt8], id: Int)? {
        if let decoded = lock.withLock({ decodedPreview }) { return decoded }
        let (progress, id) = lock.withLock { (lastProgress, imageIndex * 10_000 + step) }
        guard let latents = progress?.latents, let image = LatentPreview.image(latents), let png = try? image.pngData() else { return nil }
        return (png, id)
    }

    func finish(_ r: Result<GenerationOutput, any Error>) {
        let toResume: [CheckedContinuation<Result<GenerationOutput, any Error>, Never>] = lock.withLock {
            guard result == nil else { return [] }
            result = r
            defer { waiters = [] }
            return waiters
        }
        for w in toResume { w.resume(returning: r) }
    }

    func value() async -> Result<GenerationOutput, any Error> {
        await withCheckedContinuation { c in
            let ready: Result<GenerationOutput, any Error>? = lock.withLock {
                if let result { return result }
                waiters.append(c)
                return nil
            }
            if let ready { c.resume(returning: ready) }
        }
    }
}

/// One generation at a time on a thread of its own (the pipelines are synchronous and use every core),
/// behind a bounded FIFO queue.
final class JobQueue: @unchecked Sendable {
    let capacity: Int
    private let model: ServedModel
    private let metrics: ServerMetrics
    private let logger: Logger
    private let lock = NSLock()
    private let wake = DispatchSemaphore(value: 0)
    private var pending: [Job] = []
    private var running: Job?
    private var accepting = true
    private var lastInterrupted = false
    /// Mean seconds per finished job, for Retry-After and /progress.
    private var meanSeconds = 10.0
    /// Task ids (the clients' `force_task_id`) of the latest finished jobs, oldest first, for /internal/progress.
    private var finishedTasks: [String] = []
    private var worker: Thread?

    /// The live-preview decoder and its interval (`ServerConfiguration.previewVAE`, `previewEvery`).
    private let previewVAE: (any LatentAutoencoder)?
    private let previewEvery: Int

    init(model: ServedModel, capacity: Int, metrics: ServerMetrics, logger: Logger, previewVAE: (any LatentAutoencoder)? = nil,
         previewEvery: Int = 1) {
        self.model = model
        self.capacity = capacity
        self.previewVAE = previewVAE
        self.previewEvery = previewEvery
        self.metrics = metrics
        self.logger = logger
        let thread = Thread { [weak self] in self?.loop() }
        thread.name = "sd-generation"
        thread.stackSize = 16 << 20  // the pipelines recurse through the networks; the default 512 KiB is tight
        worker = thread
        thread.start()
    }

    /// Queues `request`, or refuses it (503) when the queue is full or the server is stopping.
    func submit(_ request: GenerationRequest) throws -> Job {
        let job = Job(request: request)
        let refusal: APIError? = lock.withLock {
            guard accepting else { return .shuttingDown }
            guard pending.count < capacity else {
                let wait = meanSeconds * Double(pending.count + 1)
                return .queueFull(retryAfter: Int(min(3600, max(1, wait.rounded(.up)))))
            }
            pending.append(job)
            metrics.queueLength.set(Double(pending.count))
            return nil
        }
        if let refusal {
            metrics.jobs(.rejected).increment()
            throw refusal
        }
        wake.signal()
        return job
    }

    /// Waits for `job`; if the waiting task is cancelled (its client went away) the job is dropped from the
    /// queue, or stopped if it is running.
    func wait(_ job: Job) async -> Result<GenerationOutput, any Error> {
        await withTaskCancellationHandler {
            await job.value()
        } onCancel: {
            self.cancel(job)
        }
    }

    func cancel(_ job: Job) {
        job.cancel()
        let removed: Bool = lock.withLock {
            guard let i = pending.firstIndex(where: { $0 === job }) else { return false }
            pending.remove(at: i)
            metrics.queueLength.set(Double(pending.count))
            return true
        }
        if removed {
            metrics.jobs(.cancelled).increment()
            job.finish(.failure(APIError.cancelled))
        }
    }

    /// A1111's /interrupt: stops the running job after its current step; the pictures it finished and the
    /// one it was drawing (its denoised estimate at that step) are returned. Queued jobs are not touched.
    func interrupt() {
        lock.withLock {
            running?.interruption.interrupt()
            if running != nil { lastInterrupted = true }
        }
    }

    /// Stops taking work, drops what waits and stops what runs.
    func shutdown() {
        let dropped: [Job] = lock.withLock {
            accepting = false
            running?.cancel()
            defer { pending = [] }
            return pending
        }
        for job in dropped {
            metrics.jobs(.cancelled).increment()
            job.finish(.failure(APIError.shuttingDown))
        }
        wake.signal()
    }

    /// Where the job a client tagged with `taskID` is, as AUTOMATIC1111's /internal/progress reports it.
    enum TaskStatus {
        case queued(position: Int)
        case running(Job)
        case finished
        case unknown
    }

    func status(ofTask taskID: String) -> TaskStatus {
        lock.withLock {
            if let r = running, r.request.taskID == taskID { return .running(r) }
            if let i = pending.firstIndex(where: { $0.request.taskID == taskID }) { return .queued(position: i + 1) }
            return finishedTasks.contains(taskID) ? .finished : .unknown
        }
    }

    struct State {
        var running: Job?
        var queued: Int
        var interrupted: Bool
        var meanSeconds: Double
    }

    var state: State { lock.withLock { State(running: running, queued: pending.count, interrupted: lastInterrupted, meanSeconds: meanSeconds) } }

    private func loop() {
        while true {
            wake.wait()
            let next: Job? = lock.withLock {
                guard !pending.isEmpty else { return nil }
                let job = pending.removeFirst()
                running = job
                lastInterrupted = false
                metrics.queueLength.set(Double(pending.count))
                return job
            }
            guard let job = next else {
                if lock.withLock({ !accepting }) { return }
                continue
            }
            execute(job)
        }
    }

    private func execute(_ job: Job) {
        metrics.running.set(Double(1))
        job.started()
        let start = Date()
        let result: Result<GenerationOutput, any Error>
        if job.isCancelled {
            result = .failure(APIError.cancelled)
        } else {
            let previewVAE = self.previewVAE, every = previewEvery
            result = Result {
                try model.generate(job.request, interruption: job.interruption) { image, progress in
                    if let previewVAE { job.decodePreview(image: image, progress, vae: previewVAE, every: every) }
                    return job.report(image: image, progress)
                }
            }
        }
        let seconds = Date().timeIntervalSince(start)
        lock.withLock {
            running = nil
            meanSeconds = 0.8 * meanSeconds + 0.2 * seconds
            if let id = job.request.taskID {
                finishedTasks.append(id)
                if finishedTasks.count > 256 { finishedTasks.removeFirst(finishedTasks.count - 256) }
            }
        }
        metrics.running.set(Double(0))
        metrics.generationSeconds.record(seconds)
        switch result {
        case .success(let out) where out.interrupted || job.isCancelled: metrics.jobs(.cancelled).increment()
        case .success: metrics.jobs(.done).increment()
        case .failure: metrics.jobs(.failed).increment()
        }
        logger.info("job finished", metadata: ["pipeline": "\(job.request.task.pipelineName)", "images": "\(job.request.count)",
                                               "seconds": "\(String(format: "%.3f", seconds))", "outcome": "\(Self.outcome(result))"])
        job.finish(result)
    }

    private static func outcome(_ r: Result<GenerationOutput, any Error>) -> String {
        switch r {
        case .success(let o): return o.interrupted ? "interrupted" : "done"
        case .failure(let e): return "failed: \(e)"
        }
    }
}
