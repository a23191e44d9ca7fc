import ArgumentParser
import Foundation
import StableDiffusion

/// The flags every generating subcommand shares (the contract in ARCHITECTURE.md).
struct GenerationArguments: ParsableArguments {
    @Option(help: "Diffusers model folder (with model_index.json).")
    var model: String

    @Option(help: "The prompt.")
    var prompt: String

    @Option(help: "What not to draw (default: the empty, unconditional prompt).")
    var negativePrompt: String?

    @Option(help: "Output height in pixels, a multiple of 8 (default: the pipeline's).")
    var height: Int?

    @Option(help: "Output width in pixels, a multiple of 8 (default: the pipeline's).")
    var width: Int?

    @Option(help: "Number of denoising steps (default: the pipeline's, 50 for most).")
    var steps: Int?

    @Option(help: "Classifier-free guidance scale; <= 1 disables guidance (default: the pipeline's, 7.5 for most).")
    var guidanceScale: Float?

    @Option(help: "Images to generate (files FILE-0.png ... when more than one).")
    var numImages: Int = 1

    @Option(help: "Seed of torch.Generator(\"cpu\").manual_seed(N); random when omitted (and written into the PNG).")
    var seed: UInt64?

    @Option(help: "Scheduler, keeping the model's scheduler config: \(Schedulers.cliNames.joined(separator: ", ")).")
    var scheduler: String?

    @Option(help: "Weights variant to load, e.g. fp16 for *.fp16.safetensors.")
    var variant: String?

    @Option(help: "Output PNG file.")
    var output: String

    @Flag(help: "Report load time and peak memory on stderr.")
    var verbose = false

    func validate() throws {
        if let h = height, h <= 0 || h % 8 != 0 { throw ValidationError("--height must be a positive multiple of 8, got \(h)") }
        if let w = width, w <= 0 || w % 8 != 0 { throw ValidationError("--width must be a positive multiple of 8, got \(w)") }
        if let s = steps, s < 1 { throw ValidationError("--steps must be >= 1, got \(s)") }
        if let g = guidanceScale, !g.isFinite { throw ValidationError("--guidance-scale must be a number") }
        guard numImages >= 1 else { throw ValidationError("--num-images must be >= 1, got \(numImages)") }
        if let s = scheduler, !Schedulers.cliNames.contains(s) {
            throw ValidationError("--scheduler must be one of \(Schedulers.cliNames.joined(separator: ", ")), got \(s)")
        }
        let dir = URL(fileURLWithPath: output).deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir.isEmpty ? "." : dir, isDirectory: &isDir), isDir.boolValue else {
            throw ValidationError("--output: folder \(dir) does not exist")
        }
        var modelIsDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: model, isDirectory: &modelIsDir), modelIsDir.boolValue else {
            throw ValidationError("--model: \(model) is not a folder")
        }
    }

    var modelURL: URL { URL(fileURLWithPath: model, isDirectory: true) }

    /// Library options with this command's defaults for steps and guidance.
    func options(defaultSteps: Int = 50, defaultGuidance: Float = 7.5) -> GenerationOptions {
        var o = GenerationOptions(prompt: prompt, negativePrompt: negativePrompt)
        o.height = height
        o.width = width
        o.numInferenceSteps = steps ?? defaultSteps
        o.guidanceScale = guidanceScale ?? defaultGuidance
        o.numImagesPerPrompt = numImages
        o.seed = seed
        o.scheduler = scheduler
        return o
    }

    /// The files the images go to: `FILE.png` for one image, `FILE-0.png ...` for several.
    func outputPaths(count: Int) -> [String] {
        if count == 1 { return [output] }
        let url = URL(fileURLWithPath: output)
        let ext = url.pathExtension.isEmpty ? "png" : url.pathExtension
        let stem = url.pathExtension.isEmpty ? output : url.deletingPathExtension().path
        return (0..<count).map { "\(stem)-\($0).\(ext)" }
    }

    func reportLoad(_ components: StableDiffusionComponents) {
        guard verbose else { return }
        Console.error(String(format: "loaded %@ (%@) in %.2f s, peak memory %.0f MiB", components.directory.lastPathComponent,
                             components.index.pipelineClass, components.loadSeconds, Double(components.peakMemoryBytes) / 1_048_576))
    }

    /// Writes every image (with the generation parameters in a PNG text chunk), or none: on a failure the
    /// files already written by this call are removed.
    func save(_ result: GenerationResult, options: GenerationOptions, pipeline: String, extra: [(String, String)] = []) throws {
        let images = try result.rgbImages()
        let paths = outputPaths(count: images.count)
        var written: [String] = []
        do {
            for (i, image) in images.enumerated() {
                let params = parameters(result, options: options, pipeline: pipeline, extra: extra, size: (image.width, image.height))
                try image.writePNG(to: paths[i], textChunks: [("parameters", params)])
                written.append(paths[i])
            }
        } catch {
            for p in written { try? FileManager.default.removeItem(atPath: p) }
            throw error
        }
        if verbose {
            Console.error(String(format: "denoising took %.2f s; peak memory %.0f MiB", result.denoisingSeconds,
                                 Double(ProcessMemory.peakResidentBytes) / 1_048_576))
        }
        for p in written { print(p) }
    }

    /// The "parameters" text (the rule is the library's, shared with `sd serve`).
    private func parameters(_ r: GenerationResult, options: GenerationOptions, pipeline: String, extra: [(String, String)],
                            size: (Int, Int)) -> String {
        GenerationInfotext(prompt: prompt, negativePrompt: negativePrompt, steps: options.numInferenceSteps, sampler: r.schedulerName,
                           guidanceScale: options.guidanceScale, seed: r.seed, width: size.0, height: size.1,
                           model: modelURL.lastPathComponent, pipeline: pipeline, extra: extra).text
    }
}

enum Console {
    static func error(_ message: String) {
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }
}
