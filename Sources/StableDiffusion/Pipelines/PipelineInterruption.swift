import Foundation

/// Stops a running pipeline early *with* a picture, as AUTOMATIC1111's Interrupt does (and diffusers'
/// `pipe._interrupt`): after the step in progress, the model's denoised estimate at that step is decoded and
/// returned, with `GenerationResult.stoppedAfterStep` set. Returning `false` from the progress handler is the
/// other way to stop: it cancels, and nothing is decoded.
///
/// Set from any thread (an HTTP handler, a UI); the pipeline checks it after every step.
public final class PipelineInterruption: @unchecked Sendable {
    private let lock = NSLock()
    private var requested = false

    public init() {}

    public func interrupt() { lock.withLock { requested = true } }

    public var isInterrupted: Bool { lock.withLock { requested } }
}
