import Foundation
import DiffusionTensor

/// Presents an original-layout checkpoint as three diffusers-named tensor sources (UNet, VAE, text
/// encoder), driven by the diffusers configs. Tensors under a component's prefix that no module claims are
/// an error naming them: silently dropping weights would give a wrong picture.
public struct OriginalCheckpointConverter: Sendable {
    public let source: any TensorSource
    public let layout: SingleFileLayout
    let file: String

    public init(source: any TensorSource, layout: SingleFileLayout) {
        self.source = source
        self.layout = layout
        file = source.sourceDescription
    }

    public func unet(_ config: UNet2DConditionConfig) throws -> RenamedTensorSource {
        let prefix = SingleFileDetector.unetPrefix
        var entries = try map(prefix: prefix, OriginalUNetLayout.modules(config), component: "UNet")
        if layout.usesEMA {
            // Lightning's EMA keeps one flat name per parameter: "model_ema." + the name after "model." without dots.
            for (name, entry) in entries {
                let flat = "model_ema." + entry.sourceName.dropFirst("model.".count).replacingOccurrences(of: ".", with: "")
                if source.shape(of: flat) != nil { entries[name] = .init(flat, entry.transform) }
            }
        }
        return RenamedTensorSource(base: source, entries: entries, description: "\(file) (UNet, \(prefix)*\(layout.usesEMA ? ", EMA weights" : ""))")
    }

    /// - Parameter prefix: where the VAE sits: `first_stage_model.` in a whole checkpoint; a standalone VAE
    ///   file (`vae-ft-mse-840000-ema-pruned.safetensors`) has its tensors at the top.
    public func vae(_ config: AutoencoderKLConfig, prefix: String = "first_stage_model.") throws -> RenamedTensorSource {
        // Autoencoder training checkpoints keep their LPIPS/discriminator loss under `loss.`; inference never uses it.
        let entries = try map(prefix: prefix, OriginalVAELayout.modules(config), component: "VAE", ignoring: ["loss."])
        return RenamedTensorSource(base: source, entries: entries, description: "\(file) (VAE, \(prefix)*)")
    }

    /// The (first) text encoder: SD's only one, SDXL base's CLIP ViT-L, the refiner's OpenCLIP bigG.
    public func textEncoder(_ config: CLIPTextConfig) throws -> RenamedTensorSource {
        try textEncoder(config, layout.textEncoders[0])
    }

    public func textEncoder(_ config: CLIPTextConfig, _ encoder: OriginalTextEncoder) throws -> RenamedTensorSource {
        var entries: [String: RenamedTensorSource.Entry] = [:]
        let prefix = encoder.prefix
        if encoder.openCLIP {
            let modules = OriginalTextEncoderLayout.openCLIPModules(config)
            for name in source.tensorNames where name.hasPrefix(prefix) {
                let rest = String(name.dropFirst(prefix.count))
                if rest == OriginalTextEncoderLayout.openCLIPPositional.0 {
                    entries[OriginalTextEncoderLayout.openCLIPPositional.1] = .init(name)
                    continue
                }
                if rest == OriginalTextEncoderLayout.openCLIPProjection.0 {
                    // SD 2 uses the hidden states only; SDXL's second encoder pools through the projection.
                    if encoder.hasProjection { entries[OriginalTextEncoderLayout.openCLIPProjection.1] = .init(name, .transposed) }
                    continue
                }
                // Blocks past the config's layer count and the logit scale are unused (see layout).
                for (target, transform) in modules.map(rest) ?? [] { entries[target] = .init(name, transform) }
            }
            return RenamedTensorSource(base: source, entries: entries, description: "\(file) (OpenCLIP text encoder, \(prefix)*)")
        }
        for name in source.tensorNames where name.hasPrefix(prefix) {
            entries[OriginalTextEncoderLayout.clipName(String(name.dropFirst(prefix.count)))] = .init(name)
        }
        return RenamedTensorSource(base: source, entries: entries, description: "\(file) (CLIP text encoder, \(prefix)*)")
    }

    private func map(prefix: String, _ modules: ModulePrefixMap, component: String, ignoring: [String] = []) throws -> [String: RenamedTensorSource.Entry] {
        var entries: [String: RenamedTensorSource.Entry] = [:]
        var unclaimed: [String] = []
        for name in source.tensorNames where name.hasPrefix(prefix) {
            let rest = String(name.dropFirst(prefix.count))
            if ignoring.contains(where: { rest.hasPrefix($0) }) { continue }
            guard let targets = modules.map(rest) else { unclaimed.append(name); continue }
            for (target, transform) in targets { entries[target] = .init(name, transform) }
        }
        guard unclaimed.isEmpty else {
            throw PipelineError.badModel(path: file, detail: "\(unclaimed.count) \(component) tensor(s) have no place in the configured architecture (config and checkpoint disagree?): \(unclaimed.prefix(8).joined(separator: ", "))\(unclaimed.count > 8 ? ", ..." : "")")
        }
        return entries
    }
}
