import Foundation

/// The Stable Diffusion families a single-file checkpoint can be, told apart by tensor names and shapes.
public enum SingleFileModelKind: String, Sendable, CaseIterable {
    case sd1 = "SD 1.x"
    case sd2 = "SD 2.x"
    case sd1Inpainting = "SD 1.x inpainting"
    case sd2Inpainting = "SD 2.x inpainting"
    case sd2Depth = "SD 2 depth"
    case x4Upscaler = "x4 upscaler"
    /// SDXL base layout (also SDXL-Turbo and the community families: Pony, Illustrious, ...).
    case sdxl = "SDXL"
    case sdxlRefiner = "SDXL refiner"
    case sdxlInpainting = "SDXL inpainting"

    public var isSDXL: Bool { self == .sdxl || self == .sdxlRefiner || self == .sdxlInpainting }
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

/// One text encoder inside an original checkpoint: the diffusers component it becomes, where its tensors
/// sit and in which of the two layouts (transformers' CLIP names, or an OpenCLIP text tower).
public struct OriginalTextEncoder: Sendable, Equatable {
    /// `text_encoder` or `text_encoder_2` (SDXL's OpenCLIP bigG, with its projection).
    public var component: String
    public var prefix: String
    public var openCLIP: Bool
    /// The tokenizer folder that goes with the encoder (`tokenizer`, `tokenizer_2`).
    public var tokenizerComponent: String { component.replacingOccurrences(of: "text_encoder", with: "tokenizer") }
    /// SDXL's second encoder is a `CLIPTextModelWithProjection`.
    public var hasProjection: Bool { component == "text_encoder_2" }
}

/// Which text encoders a checkpoint holds, where, and whether its UNet is read from the EMA copy.
public struct SingleFileLayout: Sendable, Equatable {
    /// In the order of the model's components: SD's one, SDXL base's two, the SDXL refiner's second only.
    public var textEncoders: [OriginalTextEncoder]
    public var usesEMA: Bool
    /// SD 2's OpenCLIP (`cond_stage_model.model.*`) rather than SD 1's CLIP (`cond_stage_model.transformer.*`).
    public var openCLIP: Bool { textEncoders.count == 1 && textEncoders[0].openCLIP && !isSDXL }
    /// SGM's layout (`conditioner.embedders.N.*`): SDXL base, refiner or inpainting.
    public var isSDXL: Bool { textEncoders.contains { $0.prefix.hasPrefix(OriginalTextEncoderLayout.sdxlPrefix) } }
}
