import Foundation

/// The text encoder inside an original checkpoint, in one of its two layouts.
enum OriginalTextEncoderLayout {
    /// SD 1.x: a transformers CLIPTextModel under `cond_stage_model.transformer.`, already in diffusers'
    /// names; only the prefix differs.
    static let clipPrefix = "cond_stage_model.transformer."
    /// SD 2.x: an OpenCLIP text tower under `cond_stage_model.model.`.
    static let openCLIPPrefix = "cond_stage_model.model."
    /// SDXL (Stability's SGM): `conditioner.embedders.0.transformer.` (CLIP ViT-L) and
    /// `conditioner.embedders.1.model.` (OpenCLIP ViT-bigG) in the base; the refiner has bigG alone at `0.model.`.
    static let sdxlPrefix = "conditioner.embedders."

    /// The encoders a checkpoint's tensor names show, or nil when none of the known layouts is there.
    static func encoders(_ names: Dictionary<String, [Int]>.Keys) -> [OriginalTextEncoder]? {
        func has(_ prefix: String) -> Bool { names.contains { $0.hasPrefix(prefix) } }
        let base0 = sdxlPrefix + "0.transformer.", base1 = sdxlPrefix + "1.model.", refiner = sdxlPrefix + "0.model."
        if has(base0), has(base1) {
            return [.init(component: "text_encoder", prefix: base0, openCLIP: false),
                    .init(component: "text_encoder_2", prefix: base1, openCLIP: true)]
        }
        if has(refiner) { return [.init(component: "text_encoder_2", prefix: refiner, openCLIP: true)] }
        let clip = has(clipPrefix), open = has(openCLIPPrefix)
        if clip { return [.init(component: "text_encoder", prefix: clipPrefix, openCLIP: false)] }
        if open { return [.init(component: "text_encoder", prefix: openCLIPPrefix, openCLIP: true)] }
        return nil
    }

    /// SD 1.x names (relative to `clipPrefix`) to the `text_model.`-prefixed names CLIPTextModel reads.
    static func clipName(_ rest: String) -> String {
        rest.hasPrefix("text_model.") ? rest : "text_model." + rest
    }

    /// OpenCLIP modules. Only the first `numHiddenLayers` residual blocks are kept: SD 2 uses the
    /// penultimate layer's output, so diffusers' SD 2 text encoder config has 23 of OpenCLIP's 24 layers and
    /// the last block is dropped; `text_projection`, `logit_scale` and `attn_mask` are unused likewise.
    static func openCLIPModules(_ c: CLIPTextConfig) -> ModulePrefixMap {
        var m = ModulePrefixMap()
        m.add("token_embedding", "text_model.embeddings.token_embedding")
        m.add("ln_final", "text_model.final_layer_norm")
        for i in 0..<c.numHiddenLayers {
            m.add("transformer.resblocks.\(i)", "text_model.encoder.layers.\(i)", .openCLIPLayer)
        }
        return m
    }

    /// OpenCLIP stores the position table as a bare parameter, not a module.
    static let openCLIPPositional = ("positional_embedding", "text_model.embeddings.position_embedding.weight")
    /// OpenCLIP's projection is a bare [hidden, projection] matrix applied as `x @ P`; transformers'
    /// `text_projection` is a Linear, so its weight is the transpose (diffusers' converter does `.T`).
    static let openCLIPProjection = ("text_projection", "text_projection.weight")
}
