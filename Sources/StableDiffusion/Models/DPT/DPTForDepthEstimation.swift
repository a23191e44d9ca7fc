import Foundation
import DiffusionTensor

/// transformers' `DPTForDepthEstimation` with the hybrid backbone (DPT-Hybrid / MiDaS v3 hybrid, the
/// `depth_estimator` of stable-diffusion-2-depth): BiT ResNet stem, ViT encoder, reassemble + fusion neck,
/// depth head. Weight names are those of transformers' state dict (the same in 4.x and 5.x: 5.24 has no
/// conversion mapping for DPT or BiT).
public final class DPTForDepthEstimation: Sendable {
    public let config: DPTConfig
    let encoder: DPTHybridEncoder
    let neck: DPTNeck
    let head: DPTDepthHead

    /// Builds the model from `weights`, strictly: a missing, mis-shaped or unused tensor is an error.
    public init(config: DPTConfig, weights: any TensorSource, file: String = "depth_estimator/config.json") throws {
        try config.validate(file: file)
        self.config = config
        let r = WeightReader(weights)
        encoder = try DPTHybridEncoder(r, config: config, file: file)
        neck = try DPTNeck(r, config: config)
        head = try DPTDepthHead(r, config: config)
        try r.requireAllUsed()
    }

    /// Loads `directory/config.json` and its weights (`model.safetensors`, sharded, or `pytorch_model.bin`;
    /// `variant` picks e.g. `model.fp16.safetensors`).
    public convenience init(directory: URL, variant: String? = nil) throws {
        let configURL = directory.appendingPathComponent("config.json")
        let config = try DPTConfig.load(from: configURL)
        let weights = try WeightFiles.open(directory: directory, stems: ["model", "pytorch_model"], variant: variant)
        try self.init(config: config, weights: weights, file: configURL.path)
    }

    /// `predicted_depth` for NHWC `pixelValues` (`[batch, imageSize, imageSize, 3]`, as `DPTImageProcessor`
    /// makes them): `[batch, imageSize, imageSize]`, the head's ReLU output.
    public func callAsFunction(_ pixelValues: Tensor) throws -> Tensor {
        let (maps, tokens) = try encoder(pixelValues)
        return try head(neck(maps: maps, tokens: tokens))
    }

    /// Same as calling the model.
    public func predictedDepth(pixelValues: Tensor) throws -> Tensor { try self(pixelValues) }
}
