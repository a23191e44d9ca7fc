import Foundation
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

    /// Its progress as the HTTP side sees it, with the live preview.
    var progress: JobProgress {
        let s = snapshot
        return JobProgress(pipeline: request.task.pipelineName, count: request.count, image: s.image, step: s.step, steps: s.steps,
                           started: s.started, preview: { [self] in self.preview() })
    }

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
