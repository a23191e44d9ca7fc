import Foundation
import DiffusionTensor

/// The models LoRAs and embeddings change (tokenizer, text encoder, UNet), built from base weights with
/// the adapters applied on the way in. The weights can come from a model folder or a converted single file.
struct AdaptedModels {
    let tokenizer: CLIPTokenizer
    let textEncoder: CLIPTextModel
    let unet: UNet2DConditionModel

    init(tokenizer baseTokenizer: CLIPTokenizer, textConfig: CLIPTextConfig, textWeights: any TensorSource,
         unetConfig: UNet2DConditionConfig, unetWeights: any TensorSource, adapters: ModelAdapters,
         precision: ComputePrecision) throws {
        // Each LoRA file is read once for both models.
        let loras = try adapters.loraFiles()
        func merged(_ base: any TensorSource, _ target: LoRATarget) throws -> any TensorSource {
            loras.isEmpty ? base : try LoRATensorSource(base: base, target: target, files: loras)
        }
        let (tok, config, weightsWithEmbeddings) = try adapters.addEmbeddings(
            tokenizer: baseTokenizer, config: textConfig, weights: try merged(textWeights, .textEncoder))
        tokenizer = tok
        textEncoder = try CLIPTextModel(config: config, weights: weightsWithEmbeddings, precision: precision.forModel(.textEncoder))
        unet = try UNet2DConditionModel(config: unetConfig, weights: try merged(unetWeights, .unet), precision: precision.forModel(.unet))
    }

    /// From a model folder's component folders.
    init(tokenizer tokenizerDir: URL, textEncoder textDir: URL, unet unetDir: URL, variant: String?, adapters: ModelAdapters,
         precision: ComputePrecision) throws {
        try self.init(tokenizer: try CLIPTokenizer(directory: tokenizerDir), textConfig: CLIPTextConfig.load(from: textDir),
                      textWeights: try WeightFiles.open(directory: textDir, stems: ["model", "pytorch_model"], variant: variant),
                      unetConfig: UNet2DConditionConfig.load(unetDir.appendingPathComponent("config.json")),
                      unetWeights: try WeightFiles.open(directory: unetDir, stems: ["diffusion_pytorch_model"], variant: variant),
                      adapters: adapters, precision: precision)
    }
}

extension StableDiffusionComponents {
    /// The same model folder with another set of LoRAs and embeddings (an empty set: the plain model).
    /// Tokenizer, text encoder and UNet are built again from the base files, so nothing is unmerged and
    /// no earlier adapter lingers; the VAE and scheduler configs are shared with `self`, and the precision
    /// is `self`'s.
    /// - Parameter variant: the weight variant `self` was loaded with.
    public func withAdapters(_ adapters: ModelAdapters, variant: String? = nil) throws -> StableDiffusionComponents {
        guard singleFileDetection == nil, FileManager.default.fileExists(atPath: directory.appendingPathComponent("model_index.json").path) else {
            throw PipelineError.invalidArgument("switching LoRAs and embeddings needs a model folder; load \(directory.path) again with the new adapters")
        }
        if family == .stableDiffusionXL {
            // No adapters for SDXL yet: the only set there is is the empty one these were loaded with.
            try Self.checkSDXLSupports(adapters: adapters, path: directory.path)
            return self
        }
        let adapted = try AdaptedModels(tokenizer: directory.appendingPathComponent("tokenizer"),
                                        textEncoder: directory.appendingPathComponent("text_encoder"),
                                        unet: directory.appendingPathComponent("unet"), variant: variant, adapters: adapters,
                                        precision: precision)
        return StableDiffusionComponents(index: index, tokenizer: adapted.tokenizer, textEncoder: adapted.textEncoder, unet: adapted.unet,
                                         vae: vae, schedulerConfig: schedulerConfig, lowResSchedulerConfig: lowResSchedulerConfig,
                                         directory: directory, adapters: adapters, precision: precision,
                                         tokenizer2: tokenizer2, textEncoder2: textEncoder2)
    }
}
