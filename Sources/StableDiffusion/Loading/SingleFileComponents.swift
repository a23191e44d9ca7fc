import Foundation
import DiffusionTensor

extension StableDiffusionComponents {
    /// Loads an original-layout single-file checkpoint (`.safetensors`, `.ckpt`), converting names on the fly.
    /// - Parameters:
    ///   - configDirectory: a diffusers folder whose configs (and tokenizer, scheduler) to use instead of the
    ///     bundled ones picked by detection; like diffusers' `from_single_file(config=)`.
    ///   - predictionType: `epsilon` or `v_prediction`, overriding the detected (or configured) one. For SD 2
    ///     without a config folder it also picks 2.1-base (epsilon, 512) or 2.1 (v, 768) configs.
    ///   - preferEMA: read the UNet from the `model_ema.*` copy when the file has one.
    public convenience init(singleFile url: URL, configDirectory: URL? = nil, predictionType: String? = nil,
                            preferEMA: Bool = true, includeVAEEncoder: Bool = true) throws {
        let start = Date()
        let loaded = try SingleFileModel(url: url, configDirectory: configDirectory, predictionType: predictionType, preferEMA: preferEMA)
        let configs = loaded.configs
        let convert = loaded.converter
        let tokenizer = try CLIPTokenizer(files: configs.tokenizerFiles())
        let textEncoder = try CLIPTextModel(config: CLIPTextConfig.load(from: configs.textEncoderConfig),
                                            weights: convert.textEncoder(CLIPTextConfig.load(from: configs.textEncoderConfig)))
        let unetConfig = try UNet2DConditionConfig.load(configs.unetConfig)
        let unet = try UNet2DConditionModel(config: unetConfig, weights: convert.unet(unetConfig))
        let vaeConfig = try AutoencoderKLConfig.load(configs.vaeConfig)
        let vae = try AutoencoderKL(config: vaeConfig, weights: convert.vae(vaeConfig), includeEncoder: includeVAEEncoder)
        let hidden = textEncoder.config.hiddenSize
        guard unet.config.crossAttentionDim.allSatisfy({ $0 == hidden }) else {
            throw PipelineError.badModel(path: url.path, detail: "UNet cross_attention_dim \(unet.config.crossAttentionDim[0]) does not match the text encoder's hidden_size \(hidden)")
        }
        self.init(index: loaded.index, tokenizer: tokenizer, textEncoder: textEncoder, unet: unet, vae: vae,
                  schedulerConfig: loaded.schedulerConfig, lowResSchedulerConfig: loaded.lowResSchedulerConfig, directory: url)
        loadSeconds = Date().timeIntervalSince(start)
        peakMemoryBytes = ProcessMemory.peakResidentBytes
    }
}

/// A single file opened and matched with its configs, before any weights are read.
public struct SingleFileModel: Sendable {
    public let checkpoint: SingleFileCheckpoint
    public let configs: DiffusersConfigFolder
    public let converter: OriginalCheckpointConverter
    public let index: ModelIndex
    /// Detection's verdict; nil when a config folder was given (then the configs say what the model is).
    public let detection: SingleFileDetection?
    public let schedulerConfig: SchedulerConfig
    public let lowResSchedulerConfig: SchedulerConfig?

    public init(url: URL, configDirectory: URL? = nil, predictionType: String? = nil, preferEMA: Bool = true) throws {
        if let p = predictionType, p != "epsilon", p != "v_prediction" {
            throw PipelineError.invalidArgument("prediction type must be epsilon or v_prediction, got \(p)")
        }
        checkpoint = try SingleFileCheckpoint(url: url)
        var shapes: [String: [Int]] = [:]
        for name in checkpoint.source.tensorNames { shapes[name] = checkpoint.source.shape(of: name) }
        let layout = try SingleFileDetector.layout(shapes: shapes, preferEMA: preferEMA, file: url.path)
        if let configDirectory {
            configs = try DiffusersConfigFolder(root: configDirectory)
            detection = nil
        } else {
            let found = try SingleFileDetector.detect(shapes: shapes, globalStep: checkpoint.globalStep, predictionType: predictionType,
                                                      preferEMA: preferEMA, file: url.path)
            configs = try DiffusersConfigFolder.bundled(found.configName)
            detection = found
        }
        converter = OriginalCheckpointConverter(source: checkpoint.source, layout: layout)
        index = try ModelIndex(contentsOf: configs.modelIndex)
        var scheduler = try SchedulerConfig(contentsOf: configs.schedulerConfig)
        if let p = predictionType ?? detection?.predictionType { scheduler.values["prediction_type"] = .string(p) }
        schedulerConfig = scheduler
        lowResSchedulerConfig = index.components["low_res_scheduler"] == nil ? nil : try SchedulerConfig(contentsOf: configs.lowResSchedulerConfig)
    }
}
