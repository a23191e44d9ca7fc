import Foundation
import DiffusionTensor

/// The models LoRAs and embeddings change (tokenizer, text encoder, UNet), loaded from a model folder's
/// base weight files with the adapters applied on the way in.
struct AdaptedModels {
    let tokenizer: CLIPTokenizer
    let textEncoder: CLIPTextModel
    let unet: UNet2DConditionModel

    init(tokenizer tokenizerDir: URL, textEncoder textDir: URL, unet unetDir: URL, variant: String?, adapters: ModelAdapters) throws {
        // Each LoRA file is read once for both models.
        let loras = try adapters.loraFiles()
        func merged(_ base: any TensorSource, _ target: LoRATarget) throws -> any TensorSource {
            loras.isEmpty ? base : try LoRATensorSource(base: base, target: target, files: loras)
        }
        let textWeights = try merged(try WeightFiles.open(directory: textDir, stems: ["model", "pytorch_model"], variant: variant), .textEncoder)
        let (tok, textConfig, weightsWithEmbeddings) = try adapters.addEmbeddings(
            tokenizer: try CLIPTokenizer(directory: tokenizerDir), config: CLIPTextConfig.load(from: textDir), weights: textWeights)
        tokenizer = tok
        textEncoder = try CLIPTextModel(config: textConfig, weights: weightsWithEmbeddings)
        let unetWeights = try merged(try WeightFiles.open(directory: unetDir, stems: ["diffusion_pytorch_model"], variant: variant), .unet)
        unet = try UNet2DConditionModel(config: UNet2DConditionConfig.load(unetDir.appendingPathComponent("config.json")), weights: unetWeights)
    }
}

extension StableDiffusionComponents {
    /// The same model folder with another set of LoRAs and embeddings (an empty set: the plain model).
    /// Tokenizer, text encoder and UNet are built again from the base files, so nothing is unmerged and
    /// no earlier adapter lingers; the VAE and scheduler configs are shared with `self`.
    /// - Parameter variant: the weight variant `self` was loaded with.
    public func withAdapters(_ adapters: ModelAdapters, variant: String? = nil) throws -> StableDiffusionComponents {
        let adapted = try AdaptedModels(tokenizer: directory.appendingPathComponent("tokenizer"),
                                        textEncoder: directory.appendingPathComponent("text_encoder"),
                                        unet: directory.appendingPathComponent("unet"), variant: variant, adapters: adapters)
        return StableDiffusionComponents(index: index, tokenizer: adapted.tokenizer, textEncoder: adapted.textEncoder, unet: adapted.unet,
                                         vae: vae, schedulerConfig: schedulerConfig, lowResSchedulerConfig: lowResSchedulerConfig,
                                         directory: directory, adapters: adapters)
    }
}
