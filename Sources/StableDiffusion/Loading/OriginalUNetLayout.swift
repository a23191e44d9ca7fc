import Foundation

/// Where each diffusers UNet2DConditionModel module sits in the original LDM `openaimodel.UNetModel`
/// (`model.diffusion_model.*`). Block and layer counts come from the diffusers config, so any channel
/// multiplier list, layer count or attention placement the config describes is followed.
enum OriginalUNetLayout {
    static func modules(_ c: UNet2DConditionConfig) -> ModulePrefixMap {
        var m = ModulePrefixMap()
        addDownHalf(&m, c)
        m.add("out.0", "conv_norm_out")
        m.add("out.2", "conv_out")
        let n = c.blockOutChannels.count
        // Up blocks have one layer more than the mirrored down block; the upsampler rides on the last
        // layer's output block, after the attention when the block has one.
        let upLayers = Array(c.layersPerBlock.reversed())
        var output = 0
        for i in 0..<n {
            let hasAttention = c.upBlockTypes[i] == .crossAttnUpBlock2D
            for j in 0...upLayers[i] {
                m.add("output_blocks.\(output).0", "up_blocks.\(i).resnets.\(j)", .unetResnet)
                if hasAttention { m.add("output_blocks.\(output).1", "up_blocks.\(i).attentions.\(j)") }
                if j == upLayers[i], i != n - 1 {
                    m.add("output_blocks.\(output).\(hasAttention ? 2 : 1)", "up_blocks.\(i).upsamplers.0")
                }
                output += 1
            }
        }
        return m
    }

    /// The embeddings, `input_blocks` and `middle_block`: the part a ControlNet copies (`cldm.ControlNet`
    /// names them the same way).
    static func addDownHalf(_ m: inout ModulePrefixMap, _ c: UNet2DConditionConfig) {
        m.add("time_embed.0", "time_embedding.linear_1")
        m.add("time_embed.2", "time_embedding.linear_2")
        m.add("input_blocks.0.0", "conv_in")
        // The x4 upscaler's noise-level table; projection class embeddings are an MLP. SGM keeps SDXL's
        // pooled-text + time-id MLP (diffusers' add_embedding) under the same name.
        m.add("label_emb", "class_embedding")
        let mlp = c.textTimeEmbedding == nil ? "class_embedding" : "add_embedding"
        m.add("label_emb.0.0", mlp + ".linear_1")
        m.add("label_emb.0.2", mlp + ".linear_2")

        let n = c.blockOutChannels.count
        // input_blocks.0 is conv_in; each down block then contributes its layers and (but the last) a downsampler.
        var input = 1
        for i in 0..<n {
            for j in 0..<c.layersPerBlock[i] {
                m.add("input_blocks.\(input).0", "down_blocks.\(i).resnets.\(j)", .unetResnet)
                m.add("input_blocks.\(input).1", "down_blocks.\(i).attentions.\(j)")
                input += 1
            }
            if i != n - 1 {
                m.add("input_blocks.\(input).0", "down_blocks.\(i).downsamplers.0", .unetDownsampler)
                input += 1
            }
        }
        m.add("middle_block.0", "mid_block.resnets.0", .unetResnet)
        m.add("middle_block.1", "mid_block.attentions.0")
        m.add("middle_block.2", "mid_block.resnets.1", .unetResnet)
    }

}
