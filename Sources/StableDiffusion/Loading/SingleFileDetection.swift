import Foundation
import DiffusionTensor

/// Detection from (name, shape) pairs alone, so it can be checked on manifests of real-size files without
/// the weights. The rules follow diffusers 0.42.1's `infer_diffusers_model_type`, plus depth, which
/// diffusers does not recognise:
/// - conv_in with 9 input channels: inpainting; the cross-attention width (768 or 1024) picks SD 1 or 2.
/// - 5 input channels and 1024-wide cross attention: SD 2 depth. 7 channels plus `label_emb`: x4 upscaler.
/// - 4 channels: SD 2 when cross attention is 1024 wide, SD 1 when 768.
/// - SD 2 768 (v-prediction) and 512-base (epsilon) have identical tensors. diffusers 0.42 gives every SD 2
///   file the 2.1 (768, v) configs, and its legacy scheduler loader reads `global_step == 875000` (the SD 2.0
///   512-base release) as epsilon. Here: 768 v unless a torch checkpoint says 875000, then 2.1-base configs;
///   other 512-base files (SD 2.1-base, any .safetensors) need the prediction type or a config folder.
/// - SDXL (`conditioner.embedders.*`): see `detectSDXL`.
/// - With more than 100 `model_ema.*` tensors the EMA copy of the UNet is used (`preferEMA`).
public enum SingleFileDetector {
    static let unetPrefix = "model.diffusion_model."
    static let vaePrefix = "first_stage_model."
    static let convIn = unetPrefix + "input_blocks.0.0.weight"
    /// The first cross-attention key projection: its input width is the text encoder's hidden size.
    static let crossAttentionKeys = [unetPrefix + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
                                     unetPrefix + "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"]
    static let sd2BaseGlobalStep = 875_000

    /// The checks that hold whatever configs are used: a UNet, a VAE and a text encoder are present, and
    /// which text encoder layout and UNet copy (EMA or not) to read.
    public static func layout(shapes: [String: [Int]], preferEMA: Bool = true, file: String) throws -> SingleFileLayout {
        func fail(_ detail: String) -> PipelineError { .badModel(path: file, detail: detail) }
        guard let conv = shapes[convIn], conv.count == 4 else {
            throw fail(describeForeign(shapes) + "; expected a Stable Diffusion single-file checkpoint with \(convIn)")
        }
        guard shapes.keys.contains(where: { $0.hasPrefix(vaePrefix) }) else {
            throw fail("has a UNet but no VAE (\(vaePrefix)*); expected a full Stable Diffusion checkpoint (UNet, VAE and text encoder)")
        }
        guard let encoders = OriginalTextEncoderLayout.encoders(shapes.keys) else {
            throw fail("has no text encoder (\(OriginalTextEncoderLayout.clipPrefix)*, \(OriginalTextEncoderLayout.openCLIPPrefix)* or SDXL's \(OriginalTextEncoderLayout.sdxlPrefix)*); expected a full Stable Diffusion checkpoint")
        }
        let emaCount = shapes.keys.lazy.filter { $0.hasPrefix("model_ema.") }.count
        return SingleFileLayout(textEncoders: encoders, usesEMA: preferEMA && emaCount > 100)
    }

    public static func detect(shapes: [String: [Int]], globalStep: Int? = nil, predictionType: String? = nil,
                              preferEMA: Bool = true, file: String) throws -> SingleFileDetection {
        func fail(_ detail: String) -> PipelineError { .badModel(path: file, detail: detail) }
        let layout = try layout(shapes: shapes, preferEMA: preferEMA, file: file)
        let inChannels = shapes[convIn]?[1] ?? 0
        let context = crossAttentionKeys.lazy.compactMap { shapes[$0]?.last }.first
        if layout.isSDXL { return try detectSDXL(layout, inChannels: inChannels, predictionType: predictionType, file: file) }
        let kind: SingleFileModelKind
        switch (inChannels, context) {
        case (9, 768?): kind = .sd1Inpainting
        case (9, 1024?): kind = .sd2Inpainting
        case (5, 1024?): kind = .sd2Depth
        case (7, _) where shapes[unetPrefix + "label_emb.weight"] != nil: kind = .x4Upscaler
        case (4, 768?): kind = .sd1
        case (4, 1024?): kind = .sd2
        default:
            let width = context.map { "\($0)-wide cross attention" } ?? "no cross attention at input_blocks.1/2"
            throw fail("unknown architecture: UNet with \(inChannels) input channels and \(width); supported: SD 1.x (4 channels, 768), SD 2.x (4, 1024), inpainting (9), SD 2 depth (5), x4 upscaler (7 + label_emb)")
        }
        let wantsOpenCLIP = kind != .sd1 && kind != .sd1Inpainting
        guard wantsOpenCLIP == layout.openCLIP else {
            throw fail("\(kind.rawValue) UNet but a \(layout.openCLIP ? "OpenCLIP (SD 2)" : "CLIP (SD 1)") text encoder; expected \(wantsOpenCLIP ? OriginalTextEncoderLayout.openCLIPPrefix : OriginalTextEncoderLayout.clipPrefix)*")
        }
        if let p = predictionType, p != "epsilon", p != "v_prediction" {
            throw PipelineError.invalidArgument("prediction type must be epsilon or v_prediction, got \(p)")
        }
        var configName: String
        var prediction: String
        switch kind {
        case .sd1: (configName, prediction) = ("runwayml-stable-diffusion-v1-5", "epsilon")
        case .sd1Inpainting: (configName, prediction) = ("runwayml-stable-diffusion-inpainting", "epsilon")
        case .sd2Inpainting: (configName, prediction) = ("stabilityai-stable-diffusion-2-inpainting", "epsilon")
        case .sd2Depth: (configName, prediction) = ("stabilityai-stable-diffusion-2-depth", "epsilon")
        case .x4Upscaler: (configName, prediction) = ("stabilityai-stable-diffusion-x4-upscaler", "epsilon")
        case .sdxl, .sdxlRefiner, .sdxlInpainting: throw fail("SDXL UNet without SDXL's text encoders")
        case .sd2:
            let guess = globalStep == sd2BaseGlobalStep ? "epsilon" : "v_prediction"
            prediction = predictionType ?? guess
            configName = prediction == "epsilon" ? "stabilityai-stable-diffusion-2-1-base" : "stabilityai-stable-diffusion-2-1"
        }
        if let predictionType { prediction = predictionType }
        return SingleFileDetection(kind: kind, predictionType: prediction, configName: configName, usesEMA: layout.usesEMA)
    }

    /// SDXL as diffusers tells it: both encoders (`conditioner.embedders.1.model.*`) and 9 input channels is
    /// inpainting, 4 the base layout (SDXL-Turbo and community fine-tunes have the same tensors); bigG alone
    /// at `conditioner.embedders.0.model.*` is the refiner. All are epsilon models unless told otherwise.
    static func detectSDXL(_ layout: SingleFileLayout, inChannels: Int, predictionType: String?, file: String) throws -> SingleFileDetection {
        let refiner = layout.textEncoders.count == 1
        let kind: SingleFileModelKind
        switch (inChannels, refiner) {
        case (4, false): kind = .sdxl
        case (9, false): kind = .sdxlInpainting
        case (4, true): kind = .sdxlRefiner
        default:
            throw PipelineError.badModel(path: file, detail: "unknown SDXL architecture: UNet with \(inChannels) input channels and \(refiner ? "the refiner's" : "the base's") text encoders; supported: SDXL base (4 channels), inpainting (9), refiner (4, OpenCLIP bigG only)")
        }
        if let p = predictionType, p != "epsilon", p != "v_prediction" {
            throw PipelineError.invalidArgument("prediction type must be epsilon or v_prediction, got \(p)")
        }
        let configName = switch kind {
        case .sdxlRefiner: "stabilityai-stable-diffusion-xl-refiner-1.0"
        case .sdxlInpainting: "diffusers-stable-diffusion-xl-1.0-inpainting-0.1"
        default: "stabilityai-stable-diffusion-xl-base-1.0"
        }
        return SingleFileDetection(kind: kind, predictionType: predictionType ?? "epsilon", configName: configName, usesEMA: layout.usesEMA)
    }

    public static func detect(_ source: any TensorSource, globalStep: Int? = nil, predictionType: String? = nil,
                              preferEMA: Bool = true) throws -> SingleFileDetection {
        var shapes: [String: [Int]] = [:]
        for name in source.tensorNames { shapes[name] = source.shape(of: name) }
        return try detect(shapes: shapes, globalStep: globalStep, predictionType: predictionType, preferEMA: preferEMA,
                          file: source.sourceDescription)
    }

    /// What a file without an original-layout UNet looks like instead, for the error message.
    static func describeForeign(_ shapes: [String: [Int]]) -> String {
        let names = shapes.keys
        func any(_ prefix: String) -> Bool { names.contains { $0.hasPrefix(prefix) } }
        if names.isEmpty { return "holds no tensors" }
        if any(OriginalTextEncoderLayout.sdxlPrefix) && !any(unetPrefix) { return "has SDXL text encoders (conditioner.embedders.*) but no UNet" }
        if any(vaePrefix) && !any(unetPrefix) { return "holds only a VAE (first_stage_model.*), no UNet" }
        if names.contains("encoder.conv_in.weight") || names.contains("decoder.conv_in.weight") {
            return "looks like a standalone VAE file (encoder.*/decoder.*), not a full model"
        }
        if any("lora_") || names.contains(where: { $0.contains("lora_down") || $0.contains("lora_A") }) {
            return "looks like a LoRA file, not a full model"
        }
        if names.contains("conv_in.weight") || any("down_blocks.") { return "looks like a diffusers-format UNet, not an original-layout checkpoint" }
        if any(unetPrefix) { return "has UNet tensors but no \(convIn)" }
        return "has none of the original Stable Diffusion tensor names (e.g. \(names.sorted().prefix(3).joined(separator: ", ")))"
    }
}
