import Foundation
import DiffusionTensor

/// The loaded parts of a diffusers Stable Diffusion folder. Loading is where every file problem is found:
/// a pipeline built from these never touches the disk again.
public final class StableDiffusionComponents: @unchecked Sendable {
    public let directory: URL
    public let index: ModelIndex
    public let tokenizer: CLIPTokenizer
    public let textEncoder: CLIPTextModel
    public let unet: UNet2DConditionModel
    public let vae: AutoencoderKL
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
        index = try ModelIndex(contentsOf: directory.appendingPathComponent("model_index.json"))
        for required in ["unet", "vae", "text_encoder", "tokenizer", "scheduler"] where index.components[required] == nil {
            throw PipelineError.badModel(path: directory.appendingPathComponent("model_index.json").path,
                                         detail: "component \"\(required)\" is missing")
        }
        func sub(_ name: String) throws -> URL {
            let url = directory.appendingPathComponent(name)
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue else {
                throw PipelineError.badModel(path: url.path, detail: "component folder is missing")
            }
            return url
        }
        if let textClass = index.components["text_encoder"]?.className, textClass != "CLIPTextModel" {
            throw PipelineError.badModel(path: directory.path, detail: "text encoder class \(textClass) is not supported (CLIPTextModel is)")
        }
        self.adapters = adapters
        self.precision = precision
        let adapted = try AdaptedModels(tokenizer: try sub("tokenizer"), textEncoder: try sub("text_encoder"), unet: try sub("unet"),
                                        variant: variant, adapters: adapters, precision: precision)
        tokenizer = adapted.tokenizer
        textEncoder = adapted.textEncoder
        unet = adapted.unet
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
        let hidden = textEncoder.config.hiddenSize
        guard unet.config.crossAttentionDim.allSatisfy({ $0 == hidden }) else {
            throw PipelineError.badModel(path: directory.path, detail: "UNet cross_attention_dim \(unet.config.crossAttentionDim[0]) does not match the text encoder's hidden_size \(hidden)")
        }
        loadSeconds = Date().timeIntervalSince(start)
        peakMemoryBytes = ProcessMemory.peakResidentBytes
    }

    /// Components built in memory (benchmarks, tests): no folder is read.
    public init(index: ModelIndex, tokenizer: CLIPTokenizer, textEncoder: CLIPTextModel, unet: UNet2DConditionModel,
                vae: AutoencoderKL, schedulerConfig: SchedulerConfig, lowResSchedulerConfig: SchedulerConfig? = nil,
                directory: URL = URL(fileURLWithPath: "<memory>"), adapters: ModelAdapters = ModelAdapters(),
                precision: ComputePrecision = .fp32) {
        self.directory = directory
        self.index = index
        self.tokenizer = tokenizer
        self.textEncoder = textEncoder
        self.unet = unet
        self.vae = vae
        self.schedulerConfig = schedulerConfig
        self.lowResSchedulerConfig = lowResSchedulerConfig
        self.adapters = adapters
        self.precision = precision
        loadSeconds = 0
        peakMemoryBytes = ProcessMemory.peakResidentBytes
    }

    /// Pixels per latent (8 for SD, 4 for the x4 upscaler).
    public var vaeScaleFactor: Int { vae.config.scaleFactor }

    /// The image side a pipeline uses when no size is given: the UNet's sample size (64 when unset) times
    /// the VAE scale factor, as diffusers. Both configs bound their parts, so this cannot overflow.
    public static func defaultImageSide(unet: UNet2DConditionConfig, vae: AutoencoderKLConfig) -> Int {
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
