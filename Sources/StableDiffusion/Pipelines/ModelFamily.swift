/// Which diffusers pipeline family a model folder (or single file) belongs to. The family decides the text
/// side (one CLIP encoder, or SDXL's two with a pooled embedding) and the UNet's extra conditioning; the
/// pipelines themselves (`StableDiffusionPipeline`, `StableDiffusionImg2ImgPipeline`, ...) are shared.
public enum ModelFamily: String, Sendable, Equatable {
    /// SD 1.x / 2.x: `StableDiffusion*Pipeline`, one `CLIPTextModel`.
    case stableDiffusion = "SD"
    /// SDXL: `StableDiffusionXL*Pipeline`, `text_encoder` + `text_encoder_2` (with projection), a UNet with
    /// `addition_embed_type: "text_time"`.
    case stableDiffusionXL = "SDXL"

    /// The family a folder's components describe: SDXL when it has a second text encoder or its UNet
    /// takes SDXL's added conditioning.
    static func of(index: ModelIndex, unet: UNet2DConditionConfig) -> ModelFamily {
        index.components["text_encoder_2"] != nil || unet.textTimeEmbedding != nil ? .stableDiffusionXL : .stableDiffusion
    }

    /// diffusers' pipeline class for this family and task, as AUTOMATIC1111-style infotext and errors name it.
    public func pipelineClass(_ task: String) -> String {
        switch self {
        case .stableDiffusion: return "StableDiffusion\(task)Pipeline"
        case .stableDiffusionXL: return "StableDiffusionXL\(task)Pipeline"
        }
    }
}
