import ArgumentParser
import Foundation
import StableDiffusion

/// The flags every generating subcommand shares (the contract in ARCHITECTURE.md).
struct GenerationArguments: ParsableArguments {
    @Option(help: "Diffusers model folder (with model_index.json), or a single-file checkpoint (.safetensors, .ckpt, .pt, .pth) in the original layout.")
    var model: String

    @Option(help: "With a single-file --model: a diffusers folder whose configs, tokenizer and scheduler to use instead of the bundled ones.")
    var config: String?

    @Option(help: "With a single-file --model: epsilon or v_prediction, overriding the detected one (for SD 2 it also picks the 512-base or 768 configs).")
    var predictionType: String?

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

    @Option(help: "Classifier-free guidance scale; <= 1 disables guidance (default: the pipeline's, 7.5 for SD 1.x/2.x, 5.0 for SDXL).")
    var guidanceScale: Float?

    @Option(help: "Images to generate (files FILE-0.png ... when more than one).")
    var numImages: Int = 1

    @Option(help: "Seed of torch.Generator(\"cpu\").manual_seed(N); random when omitted (and written into the PNG).")
    var seed: UInt64?

    @Option(help: "Scheduler, keeping the model's scheduler config: \(Schedulers.cliNames.joined(separator: ", ")).")
    var scheduler: String?

    @Option(help: "A VAE used instead of the model's: a folder (AutoencoderKL such as sd-vae-ft-mse, AutoencoderTiny such as TAESD, or a model folder's vae/), an A1111 VAE file (.safetensors/.ckpt), or a Hub repo id (madebyollin/taesd).")
    var vae: String?

    @Option(help: "The schedulers' eta: DDIM's (default 0) and TCD's gamma (default 0.3, as TCD's model cards use).")
    var eta: Float?

    @Option(help: "Override the scheduler config's timestep spacing: linspace, leading or trailing (Turbo/Lightning/Hyper recipes use trailing).")
    var timestepSpacing: String?

    @Option(help: "LCM/TCD: the distillation schedule the few steps are picked from (diffusers' original_inference_steps; default the scheduler config's, 50).")
    var originalInferenceSteps: Int?

    @Option(help: "Weights variant to load, e.g. fp16 for *.fp16.safetensors.")
    var variant: String?

    @Option(help: "Output PNG file.")
    var output: String

    @Option(help: "What the models' convolutions and linear layers compute in: fp32 (diffusers' picture) or bf16 (faster, half the weight memory, a picture about 50 dB from fp32's; needs AVX512_BF16 or AMX).")
    var precision: ComputePrecision = .fp32

    @Option(help: "Folder where the models' weights are kept converted and laid out for this CPU, per model and precision (created if needed; about the weights' size in that precision): later runs map them instead of converting every weight again.")
    var weightCache: String?

    @OptionGroup var sdxl: SDXLArguments

    @Flag(help: "Report load time and peak memory on stderr.")
    var verbose = false

    // LoRA, textual inversion, prompt syntax, clip skip (used through AdapterArguments.swift).
    @Option(name: .customLong("lora"), help: "LoRA file to merge, FILE[:SCALE] (kohya/A1111 or diffusers/PEFT .safetensors); repeatable.")
    var loras: [String] = []
    @Option(help: "Folder where <lora:NAME:SCALE> prompt tags find NAME.safetensors.")
    var loraDir: String?
    @Option(name: .customLong("embedding"), help: "Textual-inversion embedding, FILE[:TOKEN] (A1111 .pt/.safetensors, diffusers learned_embeds); repeatable.")
    var embeddings: [String] = []
    @Option(help: "Prompt syntax: plain (diffusers, 77 tokens) or a1111 ((word:1.2), [word], BREAK, long prompts).")
    var promptSyntax: String = "plain"
    @Option(help: "Use the text encoder's output N layers before the last (diffusers' clip_skip).")
    var clipSkip: Int?

    func validate() throws {
        if let h = height, h <= 0 || h % 8 != 0 { throw ValidationError("--height must be a positive multiple of 8, got \(h)") }
        if let w = width, w <= 0 || w % 8 != 0 { throw ValidationError("--width must be a positive multiple of 8, got \(w)") }
        if let s = steps, s < 1 { throw ValidationError("--steps must be >= 1, got \(s)") }
        if let g = guidanceScale, !g.isFinite { throw ValidationError("--guidance-scale must be a number") }
        guard numImages >= 1 else { throw ValidationError("--num-images must be >= 1, got \(numImages)") }
        if let s = scheduler, !Schedulers.cliNames.contains(s) {
            throw ValidationError("--scheduler must be one of \(Schedulers.cliNames.joined(separator: ", ")), got \(s)")
        }
        if let vae, !FileManager.default.fileExists(atPath: vae), (try? HubRepoID.parseUnlessLocal(vae)) == nil {
            throw ValidationError("--vae: \(vae) does not exist and is not a Hub repo id (a VAE folder, a model folder, an A1111 VAE file, or owner/name)")
        }
        if let eta, !(eta >= 0 && eta.isFinite) { throw ValidationError("--eta must be a number >= 0, got \(eta)") }
        if let n = originalInferenceSteps, n < 1 { throw ValidationError("--original-inference-steps must be >= 1, got \(n)") }
        if let s = timestepSpacing, !GenerationOptions.timestepSpacings.contains(s) {
            throw ValidationError("--timestep-spacing must be one of \(GenerationOptions.timestepSpacings.joined(separator: ", ")), got \(s)")
        }
        let dir = URL(fileURLWithPath: output).deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir.isEmpty ? "." : dir, isDirectory: &isDir), isDir.boolValue else {
            throw ValidationError("--output: folder \(dir) does not exist")
        }
        let location: ModelLocation
        do { location = try ModelLocation.classify(model) } catch {
            if FileManager.default.fileExists(atPath: model) {
                throw ValidationError("--model: \(model) is not a folder or a single-file checkpoint (.safetensors, .ckpt, .pt, .pth)")
            }
            throw ValidationError("--model: \(model) is not a folder, a single-file checkpoint or a Hub repo id (owner/name[@revision])")
        }
        try FlagChecks.predictionType(predictionType)
        try FlagChecks.folder("--config", config)
        try FlagChecks.precision(precision)
        try FlagChecks.weightCache(weightCache)
        switch location {
        case .folder, .hubRepository:
            if config != nil || predictionType != nil {
                throw ValidationError("--config and --prediction-type apply to single-file checkpoints; --model \(model) is a diffusers pipeline")
            }
        case .singleFile:
            if variant != nil { throw ValidationError("--variant applies to diffusers folders; --model \(model) is a single file") }
        }
        try validateAdapterArguments()
    }

    var modelURL: URL { URL(fileURLWithPath: model) }

    /// What `--model` names, with a Hub repository fetched into the Hugging Face cache first (progress on
    /// stderr) and replaced by its snapshot folder, so the commands only meet folders and single files.
    func resolvedLocation() throws -> ModelLocation {
        let location = try ModelLocation.classify(model)
        guard case .hubRepository(let repo) = location else { return location }
        return .folder(try HubClient().snapshot(repo, variant: variant, progress: DownloadProgressBar.forStderr()?.update))
    }

    /// The model's components, whatever kind of model string `--model` is (see `ModelLocation`).
    func loadComponents(includeVAEEncoder: Bool = true) throws -> StableDiffusionComponents {
        let components = try StableDiffusionComponents(location: resolvedLocation(), variant: variant,
                                                       configDirectory: config.map { URL(fileURLWithPath: $0, isDirectory: true) },
                                                       predictionType: predictionType, includeVAEEncoder: includeVAEEncoder, adapters: adapters(),
                                                       precision: precision)
        guard let vae else { return components }
        let url = try Autoencoders.resolve(vae, progress: DownloadProgressBar.forStderr()?.update)
        return try components.withVAE(Autoencoders.load(url, for: components, includeEncoder: includeVAEEncoder, precision: precision),
                                      name: FileManager.default.fileExists(atPath: vae) ? url.lastPathComponent : vae)
    }

    /// Library options with the defaults of the model family's diffusers pipeline (SDXL's guidance is 5.0).
    func options(for components: StableDiffusionComponents) -> GenerationOptions {
        withFamilyDefaults(options(), components)
    }

    /// `o` with the model's own defaults (diffusers' for its pipeline class) where --steps or
    /// --guidance-scale was not given.
    func withFamilyDefaults(_ o: GenerationOptions, _ components: StableDiffusionComponents) -> GenerationOptions {
        var o = o
        if guidanceScale == nil { o.guidanceScale = components.defaultGuidanceScale }
        if steps == nil { o.numInferenceSteps = components.defaultSteps }
        if eta == nil { o.eta = Schedulers.defaultEta(cliName: scheduler, config: components.schedulerConfig) }
        return o
    }

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
        o.timestepSpacing = timestepSpacing
        o.originalInferenceSteps = originalInferenceSteps
        if let eta { o.eta = eta }
        sdxl.apply(to: &o)
        applyAdapterOptions(&o)
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
        warnAboutPrompt(components)
        guard verbose else { return }
        if let d = components.singleFileDetection {
            Console.error("detected \(d.kind.rawValue), \(d.predictionType), bundled configs \(d.configName)\(d.usesEMA ? ", EMA weights" : "")")
        }
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
                           model: modelURL.lastPathComponent, pipeline: pipeline,
                           extra: extra + (vae.map { [("VAE", URL(fileURLWithPath: $0).lastPathComponent)] } ?? [])).text
    }
}

enum Console {
    static func error(_ message: String) {
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }
}
