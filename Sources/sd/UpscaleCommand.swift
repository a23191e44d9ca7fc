import ArgumentParser
import Foundation
import StableDiffusion

/// `sd upscale`: diffusers' StableDiffusionUpscalePipeline (x4).
struct UpscaleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "upscale", abstract: "Upscale an image 4x guided by a prompt.")

    @OptionGroup var args: GenerationArguments

    @Option(help: "Low-resolution input image (PNG or JPEG).")
    var image: String

    @Option(help: "Noise added to the input, 0...max_noise_level (350).")
    var noiseLevel: Int = StableDiffusionUpscalePipeline.defaultNoiseLevel

    func validate() throws {
        guard noiseLevel >= 0 else { throw ValidationError("--noise-level must be >= 0, got \(noiseLevel)") }
    }

    func run() throws {
        let input = try Image.load(path: image)
        let pipe = try StableDiffusionUpscalePipeline(modelDirectory: args.modelURL, variant: args.variant, adapters: try args.adapters())
        args.reportLoad(pipe.components)
        let options = args.options(defaultSteps: StableDiffusionUpscalePipeline.defaultSteps,
                                   defaultGuidance: StableDiffusionUpscalePipeline.defaultGuidanceScale)
        let result = try pipe(options, image: input, noiseLevel: noiseLevel, progress: ProgressBar().update)
        try args.save(result, options: options, pipeline: "upscale", extra: [("Noise level", String(noiseLevel))])
    }
}
