import Foundation

/// A LoRA file to merge into the UNet and text-encoder weights when a model loads, with the strength
/// diffusers' `fuse_lora(lora_scale=scale)` (or `set_adapters(..., weights=[scale])`) gives it.
///
/// Merging happens while the weights load (`W + scale * alpha/rank * up @ down`), so there is no
/// per-step cost. Nothing is kept to undo it: to switch LoRA sets, call
/// `StableDiffusionComponents.withAdapters(_:)`, which rebuilds the text encoder and UNet from the base files.
public struct LoRA: Sendable, Hashable {
    public var file: URL
    public var scale: Float

    public init(file: URL, scale: Float = 1) {
        self.file = file
        self.scale = scale
    }

    /// Parses the CLI form `FILE[:SCALE]` (a trailing `:number` is the scale; anything else is part of the path).
    public init(argument: String) throws {
        let (name, scale) = try ScaledArgument.split(argument, what: "LoRA")
        self.init(file: URL(fileURLWithPath: name), scale: scale ?? 1)
    }
}

/// The model a LoRA layer belongs to.
public enum LoRATarget: String, Sendable {
    case unet = "UNet"
    case textEncoder = "text encoder"
    /// SDXL's `text_encoder_2` (kohya `lora_te2_`, diffusers `text_encoder_2.`).
    case textEncoder2 = "second text encoder"

    var isTextEncoder: Bool { self != .unet }
}
