import ArgumentParser
import Foundation
import StableDiffusion

/// `sd depth2img`: diffusers' StableDiffusionDepth2ImgPipeline.
struct Depth2ImgCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "depth2img",
                                                    abstract: "Transform an image keeping its depth (given, or estimated by the model's DPT).")

    @OptionGroup var args: GenerationArguments

    @Option(help: "Input image (PNG or JPEG).")
    var image: String

    @Option(help: "Depth map: .pt (torch.save), .npy, .safetensors or grayscale PNG, shaped (H, W), (1, H, W) or (B, H, W). Estimated when omitted.")
    var depthMap: String?

    @Option(help: "How much to change the image, in [0, 1].")
    var strength: Double = 0.8

    func validate() throws {
        guard strength >= 0, strength <= 1 else { throw ValidationError("--strength must be in [0, 1], got \(strength)") }
    }

    func run() throws {
        let input = try Image.load(path: image)
        let depth = try depthMap.map { try DepthMapFile.load(path: $0) }
        // A folder brings its DPT depth estimator; a single file carries none, so it needs --depth-map.
        let pipe: StableDiffusionDepth2ImgPipeline
        switch try args.resolvedLocation() {
        case .folder(let dir): pipe = try StableDiffusionDepth2ImgPipeline(modelDirectory: dir, variant: args.variant, adapters: try args.adapters(),
                                                                                   precision: args.precision)
        case .singleFile, .hubRepository: pipe = try StableDiffusionDepth2ImgPipeline(components: args.loadComponents())
        }
        args.reportLoad(pipe.components)
        let options = args.options()
        let result = try pipe(options, image: input, depthMap: depth, strength: strength, progress: ProgressBar().update)
        try args.save(result, options: options, pipeline: "depth2img", extra: [("Denoising strength", String(strength))])
    }
}
