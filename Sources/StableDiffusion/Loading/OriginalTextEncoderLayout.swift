import Foundation

/// The text encoder inside an original checkpoint, in one of its two layouts.
enum OriginalTextEncoderLayout {
    /// SD 1.x: a transformers CLIPTextModel under `cond_stage_model.transformer.`, already in diffusers'
    /// names; only the prefix differs.
    static let clipPrefix = "cond_stage_model.transformer."
    /// SD 2.x: an OpenCLIP text tower under `cond_stage_model.model.`.
    static let openCLIPPrefix = "cond_stage_model.model."

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
}
