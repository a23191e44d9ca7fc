import ArgumentParser
import Foundation
import StableDiffusion

/// `sd txt2img`: diffusers' StableDiffusionPipeline, or StableDiffusionXLPipeline for an SDXL model.
struct Txt2ImgCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "txt2img", abstract: "Generate images from a prompt.")

    @OptionGroup var args: GenerationArguments
    @OptionGroup var refiner: RefinerArguments
    @OptionGroup var controlNet: ControlNetArguments

    func run() throws {
        var family = ModelFamily.stableDiffusion
        let (result, options) = try refiner.run(args.options(), args: args) { o in
            let pipe = try StableDiffusionPipeline(components: args.loadComponents(includeVAEEncoder: false))
            args.reportLoad(pipe.components)
            family = pipe.components.family
            let o = try controlNet.apply(to: args.withFamilyDefaults(o, pipe.components), precision: args.precision)
            return (try pipe(o, progress: ProgressBar().update), pipe.components.family, o, pipe.components.vae)
        }
        try args.save(result, options: options, pipeline: "txt2img",
                      extra: refiner.infotext + controlNet.infotext(task: .textToImage, family: family))
    }
}

/// `sd img2img`: diffusers' StableDiffusionImg2ImgPipeline, or StableDiffusionXLImg2ImgPipeline for an SDXL model.
struct Img2ImgCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "img2img", abstract: "Transform an image guided by a prompt.")

    @OptionGroup var args: GenerationArguments

    @OptionGroup var refiner: RefinerArguments

    @OptionGroup var controlNet: ControlNetArguments

    @Option(help: "Input image (PNG or JPEG).")
    var image: String

    @Option(help: "How much to change the image, in [0, 1] (default: 0.8; 0.3 for SDXL, as diffusers).")
    var strength: Double?

    func validate() throws {
        if let strength, !(strength >= 0 && strength <= 1) { throw ValidationError("--strength must be in [0, 1], got \(strength)") }
    }

    func run() throws {
        let input = try Image.load(path: image)
        var strength = self.strength ?? 0.8
        var family = ModelFamily.stableDiffusion
        let (result, options) = try refiner.run(args.options(), args: args) { o in
            let pipe = try StableDiffusionImg2ImgPipeline(components: args.loadComponents())
            args.reportLoad(pipe.components)
            family = pipe.components.family
            strength = self.strength ?? (family == .stableDiffusionXL ? 0.3 : 0.8)
            let o = try controlNet.apply(to: args.withFamilyDefaults(o, pipe.components), precision: args.precision)
            return (try pipe(o, image: input, strength: strength, progress: ProgressBar().update), family, o, pipe.components.vae)
        }
        try args.save(result, options: options, pipeline: "img2img",
                      extra: [("Denoising strength", String(strength))] + refiner.infotext + controlNet.infotext(task: .imageToImage, family: family))
    }
}

/// `sd inpaint`: diffusers' StableDiffusionInpaintPipeline (9-channel inpainting or 4-channel models).
struct InpaintCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inpaint", abstract: "Repaint the white part of a mask.")

    @OptionGroup var args: GenerationArguments

    @OptionGroup var controlNet: ControlNetArguments

    @Option(help: "Input image (PNG or JPEG).")
    var image: String

    @Option(help: "Mask image: white is repainted, black is kept.")
    var mask: String

    @Option(help: "Inpaint only the mask's bounding box plus this margin, then paste it back.")
    var paddingMaskCrop: Int?

    @Option(help: "How much to change the masked region, in [0, 1] (default 1; 0.9999 for SDXL, as diffusers).")
    var strength: Double?

    func validate() throws {
        if let strength, !(strength >= 0 && strength <= 1) { throw ValidationError("--strength must be in [0, 1], got \(strength)") }
        if let p = paddingMaskCrop, p < 0 { throw ValidationError("--padding-mask-crop must be >= 0, got \(p)") }
    }

    func run() throws {
        let input = try Image.load(path: image)
        let maskImage = try Image.load(path: mask)
        let pipe = try StableDiffusionInpaintPipeline(components: args.loadComponents())
        args.reportLoad(pipe.components)
        let options = try controlNet.apply(to: args.options(for: pipe.components), precision: args.precision)
        let family = pipe.components.family
        let strength = self.strength ?? StableDiffusionInpaintPipeline.defaultStrength(family)
        let result = try pipe(options, image: input, mask: maskImage, strength: strength,
                              paddingMaskCrop: paddingMaskCrop, progress: ProgressBar().update)
        try args.save(result, options: options, pipeline: "inpaint",
                      extra: [("Denoising strength", String(strength))] + controlNet.infotext(task: .inpainting, family: family))
    }
}
