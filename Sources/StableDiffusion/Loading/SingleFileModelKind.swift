import Foundation

/// The Stable Diffusion families a single-file checkpoint can be, told apart by tensor names and shapes.
public enum SingleFileModelKind: String, Sendable, CaseIterable {
    case sd1 = "SD 1.x"
    case sd2 = "SD 2.x"
    case sd1Inpainting = "SD 1.x inpainting"
    case sd2Inpainting = "SD 2.x inpainting"
    case sd2Depth = "SD 2 depth"
    case x4Upscaler = "x4 upscaler"
}

/// What detection concluded, and which bundled diffusers configs describe it.
public struct SingleFileDetection: Sendable, Equatable {
    public var kind: SingleFileModelKind
    /// `epsilon` or `v_prediction`: the scheduler's prediction type the bundled config pair stands for.
    public var predictionType: String
    /// The bundled config folder (a diffusers repository name, e.g. `runwayml-stable-diffusion-v1-5`).
    public var configName: String
    /// Whether the UNet weights are read from the `model_ema.*` copy.
    public var usesEMA: Bool
}

/// Which text encoder layout a checkpoint holds and whether its UNet is read from the EMA copy.
public struct SingleFileLayout: Sendable, Equatable {
    /// SD 2's OpenCLIP (`cond_stage_model.model.*`) rather than SD 1's CLIP (`cond_stage_model.transformer.*`).
    public var openCLIP: Bool
    public var usesEMA: Bool
}
