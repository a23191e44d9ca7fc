import Foundation
import DiffusionTensor

/// The loaded parts of a diffusers Stable Diffusion folder (SD 1.x/2.x or SDXL: `family`). Loading is where
/// every file problem is found: a pipeline built from these never touches the disk again.
public final class StableDiffusionComponents: @unchecked Sendable {
    public let directory: URL
    public let index: ModelIndex
    /// What the components are: it decides the text conditioning and the UNet's extra inputs.
    public let family: ModelFamily
    public let tokenizer: CLIPTokenizer
    public let textEncoder: CLIPTextModel
    /// SDXL's second tokenizer and `CLIPTextModelWithProjection` (nil for SD 1.x/2.x).
    public let tokenizer2: CLIPTokenizer?
    public let textEncoder2: CLIPTextModel?
    /// SDXL's `force_zeros_for_empty_prompt` (model_index.json; diffusers' default true): without a negative
    /// prompt the negative embeddings are zeros.
    public let forceZerosForEmptyPrompt: Bool
    /// SDXL refiner's `requires_aesthetics_score` (model_index.json): its time ids end with an aesthetic
    /// score instead of the target size.
    public let requiresAestheticsScore: Bool
    /// SDXL refiner: no `text_encoder`; `tokenizer`/`textEncoder` then hold `tokenizer_2`/`text_encoder_2`.
    public var hasOnlySecondTextEncoder: Bool { family == .stableDiffusionXL && textEncoder2 == nil }
    public let unet: UNet2DConditionModel
    /// The model's `AutoencoderKL`, or another autoencoder put in its place (`withVAE`, `--vae`: TAESD...).
    public let vae: any LatentAutoencoder
    public let schedulerConfig: SchedulerConfig
    /// The x4 upscaler's `low_res_scheduler`, when present.
    public let lowResSchedulerConfig: SchedulerConfig?
    /// Seconds spent loading and the process's peak resident memory after loading (bytes); settable
    /// inside the module so convenience loaders (single files) can record their own timing.
    public internal(set) var loadSeconds: Double
    public internal(set) var peakMemoryBytes: Int
    /// What detection made of a single-file checkpoint (nil for folders, or when a config folder was given).
    public internal(set) var singleFileDetection: SingleFileDetection?
    /// The LoRAs and embeddings applied at load (empty for a plain load).
    public let adapters: ModelAdapters
    /// What the models were loaded to compute in (each model's share: `ComputePrecision.forModel`).
    public let precision: ComputePrecision

    /// Loads `directory` (a folder with `model_index.json`).
    /// - Parameters:
    ///   - variant: weight-file variant, e.g. `"fp16"` for `diffusion_pytorch_model.fp16.safetensors`.
    ///   - includeVAEEncoder: text-to-image needs only the decoder.
    ///   - adapters: LoRAs merged into the UNet and text-encoder weights as they load, and textual-inversion
    ///     embeddings added to the tokenizer and text encoder. To switch them (e.g. in a server), use
    ///     `withAdapters(_:variant:)`: the base weights are re-read, nothing has to be unmerged.
    ///   - precision: `bf16` runs the models' convolutions and linear layers in bf16 (`ComputePrecision.forModel`);
    ///     it needs a CPU with AVX512_BF16 or AMX, checked first.
    public init(directory: URL, variant: String? = nil, includeVAEEncoder: Bool = true, adapters: ModelAdapters = ModelAdapters(),
                precision: ComputePrecision = .fp32) throws {
        try precision.checkSupported()
        let start = Date()
        self.directory = directory
        let index = try ModelIndex(contentsOf: directory.appendingPathComponent("model_index.json"))
        self.index = index
        func missing(_ names: [String], _ why: String = "") throws {
            for required in names where index.components[required] == nil {
                throw PipelineError.badModel(path: directory.appendingPathComponent("model_index.json").path,
                                             detail: "component \"\(required)\" is missing\(why)")
            }
        }
        try missing(["unet", "vae", "scheduler"])
        func sub(_ name: String) throws -> URL {
            let url = directory.appendingPathComponent(name)
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue else {
                throw PipelineError.badModel(path: url.path, detail: "component folder is missing")
            }
            return url
        }
        let unetConfig = try UNet2DConditionConfig.load(try sub("unet").appendingPathComponent("config.json"))
        let family = ModelFamily.of(index: index, unet: unetConfig)
        self.family = family
        // SDXL's refiner has only text_encoder_2; it then stands in the first encoder's place.
        let firstEncoder = family == .stableDiffusionXL && index.components["text_encoder"] == nil ? "_2" : ""
        try missing(["text_encoder" + firstEncoder, "tokenizer" + firstEncoder])
        if family == .stableDiffusionXL {
            try missing(["text_encoder_2", "tokenizer_2"], " (an SDXL model needs it)")
            if let textClass = index.components["text_encoder_2"]?.className, textClass != CLIPTextConfig.architectureWithProjection {
                throw PipelineError.badModel(path: directory.path, detail: "text_encoder_2 class \(textClass) is not supported (CLIPTextModelWithProjection is)")
            }
        }
        if let textClass = index.components["text_encoder"]?.className, textClass != "CLIPTextModel" {
            throw PipelineError.badModel(path: directory.path, detail: "text encoder class \(textClass) is not supported (CLIPTextModel is)")
        }
        self.adapters = adapters
        self.precision = precision
        // Each component folder is checked here, so a missing one is named before any weight is read.
        var folders = ["unet", "tokenizer" + firstEncoder, "text_encoder" + firstEncoder]
        if family == .stableDiffusionXL { folders += ["tokenizer_2", "text_encoder_2"] }
        for name in folders { _ = try sub(name) }
        let adapted = try AdaptedModels(directory: directory, family: family, hasFirstEncoder: firstEncoder.isEmpty, variant: variant,
                                        adapters: adapters, precision: precision)
        tokenizer = adapted.tokenizer
        textEncoder = adapted.textEncoder
        unet = adapted.unet
        tokenizer2 = adapted.tokenizer2
        textEncoder2 = adapted.textEncoder2
        forceZerosForEmptyPrompt = index.settings["force_zeros_for_empty_prompt"]?.boolValue ?? true
        requiresAestheticsScore = index.settings["requires_aesthetics_score"]?.boolValue ?? false
        let vaeDir = try sub("vae")
        vae = try AutoencoderKL(config: AutoencoderKLConfig.load(vaeDir.appendingPathComponent("config.json")),
                                weights: WeightFiles.open(directory: vaeDir, stems: ["diffusion_pytorch_model"], variant: variant),
                                includeEncoder: includeVAEEncoder, precision: precision.forModel(.vae))
        schedulerConfig = try SchedulerConfig(contentsOf: try sub("scheduler").appendingPathComponent("scheduler_config.json"))
        if index.components["low_res_scheduler"] != nil {
            lowResSchedulerConfig = try SchedulerConfig(contentsOf: try sub("low_res_scheduler").appendingPathComponent("scheduler_config.json"))
        } else {
            lowResSchedulerConfig = nil
        }
        try Self.checkTextWidths(textEncoder: textEncoder, textEncoder2: textEncoder2, unet: unet.config,
                                 aestheticScore: requiresAestheticsScore, path: directory.path)
        loadSeconds = Date().timeIntervalSince(start)
        peakMemoryBytes = ProcessMemory.peakResidentBytes
    }

    /// Components built in memory (benchmarks, tests): no folder is read.
    public init(index: ModelIndex, tokenizer: CLIPTokenizer, textEncoder: CLIPTextModel, unet: UNet2DConditionModel,
                vae: any LatentAutoencoder, schedulerConfig: SchedulerConfig, lowResSchedulerConfig: SchedulerConfig? = nil,
                directory: URL = URL(fileURLWithPath: "<memory>"), adapters: ModelAdapters = ModelAdapters(),
                precision: ComputePrecision = .fp32, tokenizer2: CLIPTokenizer? = nil, textEncoder2: CLIPTextModel? = nil) {
        self.directory = directory
        self.index = index
        self.tokenizer = tokenizer
        self.textEncoder = textEncoder
        self.tokenizer2 = tokenizer2
        self.textEncoder2 = textEncoder2
        family = textEncoder2 != nil || unet.config.textTimeEmbedding != nil ? .stableDiffusionXL : .stableDiffusion
        forceZerosForEmptyPrompt = index.settings["force_zeros_for_empty_prompt"]?.boolValue ?? true
        requiresAestheticsScore = index.settings["requires_aesthetics_score"]?.boolValue ?? false
        self.unet = unet
        self.vae = vae
        self.schedulerConfig = schedulerConfig
        self.lowResSchedulerConfig = lowResSchedulerConfig
        self.adapters = adapters
        self.precision = precision
        loadSeconds = 0
        peakMemoryBytes = ProcessMemory.peakResidentBytes
    }

    /// The same models with another scheduler config, as diffusers' `pipe.scheduler = X.from_config(...)`
    /// (e.g. SDXL-Turbo's Euler ancestral "trailing" config on an SDXL folder). Nothing is reloaded.
    public func withScheduler(_ config: SchedulerConfig) -> StableDiffusionComponents { replacing(schedulerConfig: config) }

    /// These components with some parts replaced; everything else (and the load record) shared.
    func replacing(vae newVAE: (any LatentAutoencoder)? = nil, schedulerConfig newScheduler: SchedulerConfig? = nil) -> StableDiffusionComponents {
        let copy = StableDiffusionComponents(index: index, tokenizer: tokenizer, textEncoder: textEncoder, unet: unet, vae: newVAE ?? vae,
                                             schedulerConfig: newScheduler ?? schedulerConfig, lowResSchedulerConfig: lowResSchedulerConfig,
                                             directory: directory, adapters: adapters, precision: precision, tokenizer2: tokenizer2,
                                             textEncoder2: textEncoder2)
        copy.singleFileDetection = singleFileDetection
        copy.loadSeconds = loadSeconds
        return copy
    }

    /// The UNet's cross-attention width must be the text encoder's hidden size (SDXL: both encoders' summed).
    static func checkTextWidths(textEncoder: CLIPTextModel, textEncoder2: CLIPTextModel?, unet: UNet2DConditionConfig,
                                aestheticScore: Bool, path: String) throws {
        let hidden = textEncoder.config.hiddenSize + (textEncoder2?.config.hiddenSize ?? 0)
        let source = textEncoder2 == nil ? "the text encoder's hidden_size \(hidden)" : "the two text encoders' hidden sizes (\(textEncoder.config.hiddenSize) + \(textEncoder2!.config.hiddenSize))"
        guard unet.crossAttentionDim.allSatisfy({ $0 == hidden }) else {
            throw PipelineError.badModel(path: path, detail: "UNet cross_attention_dim \(unet.crossAttentionDim[0]) does not match \(source)")
        }
        if let added = unet.textTimeEmbedding {
            // The pooled embedding comes from text_encoder_2 (the only encoder of a refiner).
            let pooling = textEncoder2 ?? textEncoder
            guard pooling.hasProjection, let projection = pooling.config.projectionDim else {
                throw PipelineError.badModel(path: path, detail: "this UNet (addition_embed_type text_time) needs SDXL's text_encoder_2 (CLIPTextModelWithProjection)")
            }
            // diffusers' _get_add_time_ids check: 6 time ids (sizes and crop), or 5 with an aesthetic score.
            let ids = aestheticScore ? 5 : 6
            guard added.inputDim == projection + ids * added.timeEmbedDim else {
                let hint = aestheticScore ? "model_index.json says requires_aesthetics_score: true; is this not a refiner?"
                    : "a refiner needs requires_aesthetics_score: true in model_index.json"
                throw PipelineError.badModel(path: path, detail: "UNet projection_class_embeddings_input_dim \(added.inputDim) is not text_encoder_2's projection_dim \(projection) + \(ids) time ids x addition_time_embed_dim \(added.timeEmbedDim) (\(hint))")
            }
        }
    }

    /// The family's text side: SD's one encoder, SDXL's two.
    var textConditioner: any TextConditioner {
        switch family {
        case .stableDiffusion: return promptEncoder
        case .stableDiffusionXL:
            guard let tokenizer2, let textEncoder2 else {
                return SDXLPromptEncoder(tokenizer: nil, textEncoder: nil, tokenizer2: tokenizer, textEncoder2: textEncoder,
                                         forceZerosForEmptyPrompt: forceZerosForEmptyPrompt)
            }
            return SDXLPromptEncoder(tokenizer: tokenizer, textEncoder: textEncoder, tokenizer2: tokenizer2, textEncoder2: textEncoder2,
                                     forceZerosForEmptyPrompt: forceZerosForEmptyPrompt)
        }
    }

    /// `options` as this model applies guidance: an LCM-distilled UNet (`time_cond_proj_dim`) embeds the
    /// scale (`timestep_cond`) and runs one batch; every other UNet does classifier-free guidance above 1.
    func resolvingGuidance(_ options: GenerationOptions) -> GenerationOptions {
        var o = options
        o.guidanceEmbedded = unet.config.timeCondProjDim != nil
        return o
    }

    /// Everything the UNet is conditioned on for `options` and an image of `height` x `width` pixels, for the
    /// batch the denoising loop runs (doubled, negative first, with guidance): the prompt embeddings and,
    /// for SDXL, the pooled embeddings and the micro-conditioning time ids.
    public func unetConditioning(_ options: GenerationOptions, height: Int, width: Int) throws -> UNetConditioning {
        if family == .stableDiffusion {
            if options.prompts2 != nil || options.negativePrompts2 != nil {
                throw PipelineError.invalidArgument("a second prompt (prompt 2) needs an SDXL model; this is an SD 1.x/2.x model")
            }
            guard options.microConditioning.isDefault else {
                throw PipelineError.invalidArgument("original size, target size, crop coordinates and aesthetic scores need an SDXL model; this is an SD 1.x/2.x model")
            }
        }
        let options = resolvingGuidance(options)
        let text = try textConditioner.encode(options)
        // LCM-distilled UNets: w = guidance_scale - 1 per sample, embedded (diffusers' timestep_cond).
        let timestepCondition = try unet.config.timeCondProjDim.map { dim in
            try UNetConditioning.guidanceScaleEmbedding([Float](repeating: options.guidanceScale - 1, count: text.hiddenStates.shape[0]), dim: dim)
        }
        guard let pooled = text.pooled else {
            return UNetConditioning(encoderHiddenStates: text.hiddenStates, timestepCondition: timestepCondition)
        }
        let ids = options.microConditioning.timeIds(height: height, width: width, aestheticScores: requiresAestheticsScore)
        let batch = options.batchSize
        // Negative rows for the negative half of a guided batch, positive rows for the rest.
        var rows: [Float] = []
        if options.classifierFreeGuidance { for _ in 0..<batch { rows += ids.negative } }
        for _ in 0..<batch { rows += ids.positive }
        let timeIds = try Tensor(shape: [rows.count / ids.positive.count, ids.positive.count], scalars: rows)
        return UNetConditioning(encoderHiddenStates: text.hiddenStates, textTime: .init(textEmbeds: pooled, timeIds: timeIds),
                                timestepCondition: timestepCondition)
    }

    /// diffusers' `__call__` defaults for this model's pipeline class: 50 steps and guidance 7.5 (SDXL 5.0);
    /// an LCM-distilled folder (`LatentConsistencyModelPipeline`) 4 steps and 8.5.
    public var defaultSteps: Int { isLatentConsistencyModel ? 4 : 50 }
    public var defaultGuidanceScale: Float {
        if isLatentConsistencyModel { return 8.5 }
        return family == .stableDiffusionXL ? 5.0 : 7.5
    }

    /// An LCM-distilled folder (`LatentConsistencyModelPipeline`): its pipelines' defaults and image-to-image rule.
    public var isLatentConsistencyModel: Bool { index.pipelineClass.hasPrefix("LatentConsistencyModel") }

    /// Pixels per latent (8 for SD, 4 for the x4 upscaler).
    public var vaeScaleFactor: Int { vae.config.scaleFactor }

    /// The image side a pipeline uses when no size is given: the UNet's sample size (64 when unset) times
    /// the VAE scale factor, as diffusers. Both configs bound their parts, so this cannot overflow.
    public static func defaultImageSide(unet: UNet2DConditionConfig, vae: some LatentAutoencoderConfig) -> Int {
        (unet.sampleSize ?? 64) * vae.scaleFactor
    }

    public var defaultImageSide: Int { Self.defaultImageSide(unet: unet.config, vae: vae.config) }
}

/// Peak resident memory of this process, from getrusage (kilobytes on Linux, bytes on Darwin).
public enum ProcessMemory {
    public static var peakResidentBytes: Int {
        var usage = rusage()
        #if canImport(Darwin)
        getrusage(RUSAGE_SELF, &usage)
        return Int(usage.ru_maxrss)
        #else
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Int(usage.ru_maxrss) * 1024
        #endif
    }
}
