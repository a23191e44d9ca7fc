import Foundation
import DiffusionTensor

/// The control-image preprocessors (sd-webui-controlnet's "modules"): what turns a picture into the control
/// image a ControlNet was trained on. Names are the web UI's.
public enum ControlPreprocessor: String, Sendable, CaseIterable {
    /// The picture as it is (already an edge or depth map).
    case none
    /// `cv2.Canny` edges (white on black), thresholds low/high (the web UI's defaults 100 and 200).
    case canny
    /// The depth model's relative depth (near is white), min-max normalised to 0...255 as the web UI's
    /// `depth` (MiDaS) module does; here with the DPT estimator of a depth-to-image model folder.
    case depth

    public static let defaultCannyLow = 100.0
    public static let defaultCannyHigh = 200.0

    /// Runs the module on `image`. The result is a 3-channel image the size of the input (`HWC3`).
    /// - Parameters:
    ///   - low, high: canny's thresholds.
    ///   - depthEstimator: needed by `depth`.
    public func run(_ image: Image, low: Double = defaultCannyLow, high: Double = defaultCannyHigh,
                    depthEstimator: (any DepthEstimating)? = nil) throws -> Image {
        switch self {
        case .none:
            return image.hwc3()
        case .canny:
            return try CannyEdges.detect(image.hwc3(), low: low, high: high).hwc3()
        case .depth:
            guard let depthEstimator else {
                throw PipelineError.invalidArgument("the depth module needs a depth estimator (a depth-to-image model folder with depth_estimator/)")
            }
            let rgb = image.hwc3()
            let predicted = try depthEstimator.predictDepth(rgb)
            return try Self.depthImage(predicted, width: rgb.width, height: rgb.height)
        }
    }

    /// `predicted_depth` `[1, h, w]` to an 8-bit picture `width` x `height`: bicubic to the picture's size,
    /// then `(d - min) / (max - min) * 255`, clipped and truncated, as the web UI's depth module.
    static func depthImage(_ predicted: Tensor, width: Int, height: Int) throws -> Image {
        guard predicted.rank == 3, predicted.shape[0] == 1 else {
            throw TensorError.shapeMismatch("depth estimator output must be [1, h, w], got \(predicted.shape)")
        }
        let d = try predicted.reshaped([1, predicted.shape[1], predicted.shape[2], 1]).resized(height: height, width: width, mode: .bicubic)
        let values = d.scalars
        let lo = values.min() ?? 0, hi = values.max() ?? 0
        let range = hi - lo
        let pixels = values.map { v -> UInt8 in
            let n = range > 0 ? (v - lo) / range : 0
            return UInt8(min(max(n * 255, 0), 255))
        }
        return try Image(width: width, height: height, channels: 1, pixels: pixels).hwc3()
    }
}
