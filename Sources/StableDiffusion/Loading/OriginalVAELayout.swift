import Foundation

/// Where each diffusers AutoencoderKL module sits in the original LDM autoencoder (`first_stage_model.*`).
/// The original decoder numbers its up blocks from the lowest resolution's end (`up.{n-1}` runs first),
/// diffusers in running order.
enum OriginalVAELayout {
    static func modules(_ c: AutoencoderKLConfig) -> ModulePrefixMap {
        var m = ModulePrefixMap()
        for side in ["encoder", "decoder"] {
            m.add("\(side).conv_in", "\(side).conv_in")
            m.add("\(side).conv_out", "\(side).conv_out")
            m.add("\(side).norm_out", "\(side).conv_norm_out")
            m.add("\(side).mid.block_1", "\(side).mid_block.resnets.0", .vaeResnet)
            m.add("\(side).mid.block_2", "\(side).mid_block.resnets.1", .vaeResnet)
            m.add("\(side).mid.attn_1", "\(side).mid_block.attentions.0", .vaeAttention)
        }
        m.add("quant_conv", "quant_conv")
        m.add("post_quant_conv", "post_quant_conv")
        let n = c.blockOutChannels.count
        for i in 0..<n {
            for j in 0..<c.layersPerBlock {
                m.add("encoder.down.\(i).block.\(j)", "encoder.down_blocks.\(i).resnets.\(j)", .vaeResnet)
            }
            // The decoder has one resnet more per block than the encoder.
            for j in 0...c.layersPerBlock {
                m.add("decoder.up.\(n - 1 - i).block.\(j)", "decoder.up_blocks.\(i).resnets.\(j)", .vaeResnet)
            }
            m.add("encoder.down.\(i).downsample", "encoder.down_blocks.\(i).downsamplers.0")
            m.add("decoder.up.\(n - 1 - i).upsample", "decoder.up_blocks.\(i).upsamplers.0")
        }
        return m
    }
}
