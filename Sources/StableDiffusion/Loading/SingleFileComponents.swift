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
    ///   - adapters: LoRAs merged and embeddings added as the weights load, as for folders.
    ///   - precision: as for folders (`ComputePrecision.forModel`).
    public convenience init(singleFile url: URL, configDirectory: URL? = nil, predictionType: String? = nil,
                            preferEMA: Bool = true, includeVAEEncoder: Bool = true, adapters: ModelAdapters = ModelAdapters(),
                            precision: ComputePrecision = .fp32) throws {
        try precision.checkSupported()
        let start = Date()
        let loaded = try SingleFileModel(url: url, configDirectory: configDirectory, predictionType: predictionType, preferEMA: preferEMA)
        if loaded.converter.layout.isSDXL {
            try self.init(sdxl: loaded, url: url, includeVAEEncoder: includeVAEEncoder, adapters: adapters, precision: precision)
            loadSeconds = Date().timeIntervalSince(start)
            peakMemoryBytes = ProcessMemory.peakResidentBytes
            return
        }
        let configs = loaded.configs
        let convert = loaded.converter
        let textConfig = try CLIPTextConfig.load(from: configs.textEncoderConfig)
        let unetConfig = try UNet2DConditionConfig.load(configs.unetConfig)
        let adapted = try AdaptedModels(text: .init(tokenizer: try CLIPTokenizer(files: configs.tokenizerFiles()), config: textConfig,
                                                    weights: try convert.textEncoder(textConfig)),
                                        unetConfig: unetConfig, unetWeights: try convert.unet(unetConfig), adapters: adapters,
                                        precision: precision, path: url.path)
        let (tokenizer, textEncoder, unet) = (adapted.tokenizer, adapted.textEncoder, adapted.unet)
        let vaeConfig = try AutoencoderKLConfig.load(configs.vaeConfig)
        let vae = try AutoencoderKL(config: vaeConfig, weights: convert.vae(vaeConfig), includeEncoder: includeVAEEncoder,
                                    precision: precision.forModel(.vae))
        let hidden = textEncoder.config.hiddenSize
        guard unet.config.crossAttentionDim.allSatisfy({ $0 == hidden }) else {
            throw PipelineError.badModel(path: url.path, detail: "UNet cross_attention_dim \(unet.config.crossAttentionDim[0]) does not match the text encoder's hidden_size \(hidden)")
        }
        self.init(index: loaded.index, tokenizer: tokenizer, textEncoder: textEncoder, unet: unet, vae: vae,
                  schedulerConfig: loaded.schedulerConfig, lowResSchedulerConfig: loaded.lowResSchedulerConfig, directory: url,
                  adapters: adapters, precision: precision)
        singleFileDetection = loaded.detection
        loadSeconds = Date().timeIntervalSince(start)
        peakMemoryBytes = ProcessMemory.peakResidentBytes
    }

    /// SDXL: the text encoders the layout lists (base: CLIP ViT-L and OpenCLIP bigG with its projection;
    /// refiner: bigG alone), each with its own tokenizer config over the shared CLIP vocabulary.
    private convenience init(sdxl loaded: SingleFileModel, url: URL, includeVAEEncoder: Bool, adapters: ModelAdapters,
                             precision: ComputePrecision) throws {
        let configs = loaded.configs
        let convert = loaded.converter
        let encoders = try convert.layout.textEncoders.map { encoder in
            let config = try CLIPTextConfig.load(from: configs.textEncoderConfig(encoder.component))
            return AdaptedModels.TextParts(tokenizer: try CLIPTokenizer(files: configs.tokenizerFiles(encoder.tokenizerComponent)),
                                           config: config, weights: try convert.textEncoder(config, encoder))
        }
        let unetConfig = try UNet2DConditionConfig.load(configs.unetConfig)
        guard unetConfig.textTimeEmbedding != nil else {
            throw PipelineError.badModel(path: configs.unetConfig.path, detail: "an SDXL checkpoint needs a UNet config with addition_embed_type \"text_time\"")
        }
        // The refiner's only encoder is text_encoder_2 (with its projection, from its config's architecture).
        let adapted = try AdaptedModels(text: encoders[0], firstTarget: encoders.count > 1 ? .textEncoder : .textEncoder2,
                                        second: encoders.count > 1 ? encoders[1] : nil, unetConfig: unetConfig,
                                        unetWeights: try convert.unet(unetConfig), adapters: adapters, precision: precision, path: url.path)
        let vaeConfig = try AutoencoderKLConfig.load(configs.vaeConfig)
        let vae = try AutoencoderKL(config: vaeConfig, weights: convert.vae(vaeConfig), includeEncoder: includeVAEEncoder,
                                    precision: precision.forModel(.vae))
        self.init(index: loaded.index, tokenizer: adapted.tokenizer, textEncoder: adapted.textEncoder, unet: adapted.unet, vae: vae,
                  schedulerConfig: loaded.schedulerConfig, directory: url, adapters: adapters, precision: precision,
                  tokenizer2: adapted.tokenizer2, textEncoder2: adapted.textEncoder2)
        try Self.checkTextWidths(textEncoder: textEncoder, textEncoder2: textEncoder2, unet: unet.config,
                                 aestheticScore: requiresAestheticsScore, path: url.path)
        singleFileDetection = loaded.detection
    }
}
