import Foundation
import DiffusionTensor

/// The depth2img folder's `depth_estimator/` (DPTForDepthEstimation) with its `feature_extractor/`
/// (DPTImageProcessor): an 8-bit image in, `predicted_depth` `[1, H, W]` out, as diffusers calls them.
public struct DPTDepthEstimator: DepthEstimating {
    public let model: DPTForDepthEstimation
    public let processor: DPTImageProcessor

    public init(model: DPTForDepthEstimation, processor: DPTImageProcessor) {
        self.model = model
        self.processor = processor
    }

    public func predictDepth(_ image: Image) throws -> Tensor {
        let rgb = image.toRGB()
        let pixels = try processor.preprocess(rgb8: rgb.pixels, width: rgb.width, height: rgb.height)
        return try model(pixels)
    }
}

/// Loads a depth-to-image folder's estimator (also for the ControlNet depth module).
public enum DepthEstimators {
    public static func load(modelDirectory: URL, variant: String? = nil) throws -> any DepthEstimating {
        let modelDir = modelDirectory.appendingPathComponent("depth_estimator")
        let processorDir = modelDirectory.appendingPathComponent("feature_extractor")
        return DPTDepthEstimator(model: try DPTForDepthEstimation(directory: modelDir, variant: variant),
                                 processor: try DPTImageProcessor(directory: processorDir))
    }
}
