import DiffusionTensor

/// Reported after every denoising step. Return `false` from the handler to cancel the run
/// (the pipeline then throws `PipelineError.cancelled` and produces nothing).
public struct PipelineProgress: Sendable {
    /// Steps completed so far (1...totalSteps).
    public let step: Int
    public let totalSteps: Int
    /// The scheduler timestep just processed.
    public let timestep: Double
    /// Seconds since the denoising loop started.
    public let elapsedSeconds: Double
    /// The latents after this step (NHWC), for previews (`LatentPreview`); shared, not copied.
    public var latents: Tensor? = nil

    public var stepsPerSecond: Double { elapsedSeconds > 0 ? Double(step) / elapsedSeconds : 0 }
}

public typealias ProgressHandler = (PipelineProgress) -> Bool
