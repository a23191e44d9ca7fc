import Foundation
import StableDiffusion

/// The one model a server holds, loaded once at start, and the pipelines it can run.
public final class ServedModel: @unchecked Sendable {
    /// What the folder is, which decides what each endpoint does with it.
    public enum Kind: String, Sendable {
        /// An ordinary 4-channel UNet: txt2img, img2img, inpainting (diffusers' 4-channel path).
        case standard
        /// A 9-channel inpainting UNet: img2img always inpaints (a missing mask is all white).
        case inpainting
        /// Depth-conditioned (5 channels): img2img is depth2img.
        case depth
        /// The x4 upscaler: img2img and extra-single-image upscale.
        case upscaler
    }

    public let components: StableDiffusionComponents
    public let kind: Kind
    /// The folder's name, as A1111 lists a checkpoint (never the server path).
    public let name: String
    let txt2img: StableDiffusionPipeline?
    let img2img: StableDiffusionImg2ImgPipeline?
    let inpaint: StableDiffusionInpaintPipeline?
    let depth: StableDiffusionDepth2ImgPipeline?
    let upscale: StableDiffusionUpscalePipeline?

    /// The single place the server loads weights; swap this call when the loader learns more sources.
    public static func load(path: String, variant: String? = nil) throws -> ServedModel {
        try ServedModel(components: StableDiffusionComponents(directory: URL(fileURLWithPath: path, isDirectory: true), variant: variant),
                        variant: variant)
    }

    public init(components c: StableDiffusionComponents, variant: String? = nil) throws {
        components = c
        name = c.directory.lastPathComponent
        let channels = c.unet.config.inChannels
        let latent = c.vae.config.latentChannels
        if c.lowResSchedulerConfig != nil {
            kind = .upscaler
        } else if channels == 9 {
            kind = .inpainting
        } else if channels == latent + 1 {
            kind = .depth
        } else {
            kind = .standard
        }
        txt2img = kind == .standard ? try StableDiffusionPipeline(components: c) : nil
        img2img = kind == .standard ? try StableDiffusionImg2ImgPipeline(components: c) : nil
        inpaint = kind == .standard || kind == .inpainting ? try StableDiffusionInpaintPipeline(components: c) : nil
        depth = kind == .depth ? try StableDiffusionDepth2ImgPipeline(loadingEstimatorFor: c, variant: variant) : nil
        upscale = kind == .upscaler ? try StableDiffusionUpscalePipeline(components: c) : nil
    }

    /// The size txt2img draws when none is asked for (UNet sample size x VAE scale factor).
    var defaultSide: Int { (components.unet.config.sampleSize ?? 64) * components.vaeScaleFactor }
}
