import Foundation
import DiffusionTensor

/// The models LoRAs and embeddings change (tokenizer, text encoder(s), UNet), built from base weights with
/// the adapters applied on the way in. The weights can come from a model folder or a converted single file.
struct AdaptedModels {
    let tokenizer: CLIPTokenizer
    let textEncoder: CLIPTextModel
    let unet: UNet2DConditionModel
    /// SDXL's second tokenizer and text encoder (CLIPTextModelWithProjection), when the model has both.
    let tokenizer2: CLIPTokenizer?
    let textEncoder2: CLIPTextModel?

    /// A text encoder's parts before adapters: tokenizer, config and weights.
    struct TextParts {
        var tokenizer: CLIPTokenizer
        var config: CLIPTextConfig
        var weights: any TensorSource
    }

    /// - Parameters:
    ///   - firstTarget: which LoRA layers the first encoder takes: `.textEncoder`, or `.textEncoder2` for
    ///     an SDXL refiner, whose only encoder is `text_encoder_2`.
    ///   - second: SDXL base's `text_encoder_2`.
    init(text: TextParts, firstTarget: LoRATarget = .textEncoder, second: TextParts? = nil, unetConfig: UNet2DConditionConfig,
         unetWeights: any TensorSource, adapters: ModelAdapters, precision: ComputePrecision, path: String) throws {
        // Each LoRA file is read once for all the models.
        let loras = try adapters.loraFiles()
        let targets = Set([firstTarget, .unet] + (second == nil ? [] : [LoRATarget.textEncoder2]))
        for (file, _) in loras {
            if let missing = file.layers.keys.first(where: { !targets.contains($0) }), let layer = file.layers[missing]?.values.first {
                throw file.bad("\(layer.key): the file has layers for a \(missing.rawValue), which \(path) does not have (a LoRA for another model family?)")
            }
        }
        func merged(_ base: any TensorSource, _ target: LoRATarget) throws -> any TensorSource {
            loras.isEmpty ? base : try LoRATensorSource(base: base, target: target, files: loras, unetConfig: target == .unet ? unetConfig : nil)
        }
        // SDXL embeddings carry vectors per encoder: clip_l for text_encoder, clip_g for text_encoder_2.
        let xl = second != nil || firstTarget == .textEncoder2 || unetConfig.textTimeEmbedding != nil
        let (tok, config, weightsWithEmbeddings) = try adapters.addEmbeddings(
            tokenizer: text.tokenizer, config: text.config, weights: try merged(text.weights, firstTarget),
            part: xl ? (firstTarget == .textEncoder2 ? "clip_g" : "clip_l") : nil)
        tokenizer = tok
        textEncoder = try CLIPTextModel(config: config, weights: weightsWithEmbeddings, precision: precision.forModel(.textEncoder))
        if let second {
            let (tok2, config2, weights2) = try adapters.addEmbeddings(
                tokenizer: second.tokenizer, config: second.config, weights: try merged(second.weights, .textEncoder2), part: "clip_g")
            tokenizer2 = tok2
            textEncoder2 = try CLIPTextModel(config: config2, weights: weights2, precision: precision.forModel(.textEncoder), withProjection: true)
        } else {
            tokenizer2 = nil
            textEncoder2 = nil
        }
        unet = try UNet2DConditionModel(config: unetConfig, weights: try merged(unetWeights, .unet), precision: precision.forModel(.unet))
    }

    /// From a model folder's component folders: `text_encoder` and `tokenizer` (SDXL: `text_encoder_2` and
    /// `tokenizer_2` too; a refiner has only those), `unet`.
    init(directory: URL, family: ModelFamily, hasFirstEncoder: Bool, variant: String?, adapters: ModelAdapters,
         precision: ComputePrecision) throws {
        func parts(_ suffix: String) throws -> TextParts {
            let textDir = directory.appendingPathComponent("text_encoder" + suffix)
            return TextParts(tokenizer: try CLIPTokenizer(directory: directory.appendingPathComponent("tokenizer" + suffix)),
                             config: try CLIPTextConfig.load(from: textDir),
                             weights: try WeightFiles.open(directory: textDir, stems: ["model", "pytorch_model"], variant: variant))
        }
        let xl = family == .stableDiffusionXL
        let unetDir = directory.appendingPathComponent("unet")
        try self.init(text: try parts(hasFirstEncoder ? "" : "_2"), firstTarget: hasFirstEncoder ? .textEncoder : .textEncoder2,
                      second: xl && hasFirstEncoder ? try parts("_2") : nil,
                      unetConfig: UNet2DConditionConfig.load(unetDir.appendingPathComponent("config.json")),
                      unetWeights: try WeightFiles.open(directory: unetDir, stems: ["diffusion_pytorch_model"], variant: variant),
                      adapters: adapters, precision: precision, path: directory.path)
    }
}

extension StableDiffusionComponents {
    /// The same model folder with another set of LoRAs and embeddings (an empty set: the plain model).
    /// Tokenizer, text encoder(s) and UNet are built again from the base files, so nothing is unmerged and
    /// no earlier adapter lingers; the VAE and scheduler configs are shared with `self`, and the precision
    /// is `self`'s.
    /// - Parameter variant: the weight variant `self` was loaded with.
    public func withAdapters(_ adapters: ModelAdapters, variant: String? = nil) throws -> StableDiffusionComponents {
        guard singleFileDetection == nil, FileManager.default.fileExists(atPath: directory.appendingPathComponent("model_index.json").path) else {
            throw PipelineError.invalidArgument("switching LoRAs and embeddings needs a model folder; load \(directory.path) again with the new adapters")
        }
        let adapted = try AdaptedModels(directory: directory, family: family, hasFirstEncoder: !hasOnlySecondTextEncoder, variant: variant,
                                        adapters: adapters, precision: precision)
        return StableDiffusionComponents(index: index, tokenizer: adapted.tokenizer, textEncoder: adapted.textEncoder, unet: adapted.unet,
                                         vae: vae, schedulerConfig: schedulerConfig, lowResSchedulerConfig: lowResSchedulerConfig,
                                         directory: directory, adapters: adapters, precision: precision,
                                         tokenizer2: adapted.tokenizer2, textEncoder2: adapted.textEncoder2)
    }
}
