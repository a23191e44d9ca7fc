/// Which diffusers ControlNet pipeline a call is, for its default conditioning scale.
public enum ControlNetTask: Sendable {
    case textToImage, imageToImage, inpainting

    /// `controlnet_conditioning_scale`'s default in diffusers' pipelines: 1 for text-to-image, 0.8 for
    /// image-to-image, 0.5 for SD inpainting and 1 for SDXL inpainting.
    public func defaultScale(_ family: ModelFamily) -> Float {
        switch self {
        case .textToImage: return 1
        case .imageToImage: return 0.8
        case .inpainting: return family == .stableDiffusionXL ? 1 : 0.5
        }
    }
}

/// One ControlNet in a generation: the model, its control image (an edge map, a depth map, ...) and when and
/// how strongly it steers (diffusers' `controlnet_conditioning_scale`, `control_guidance_start`/`_end`).
/// Several units are summed, as diffusers' `MultiControlNetModel`.
public struct ControlNetUnit: Sendable {
    public var model: ControlNetModel
    /// The control image as given; the pipeline resizes it to the working size (Lanczos, as diffusers'
    /// `control_image_processor`) and converts it to RGB in [0, 1].
    public var image: Image
    /// diffusers' `controlnet_conditioning_scale`; nil: the pipeline's default (`ControlNetTask.defaultScale`).
    public var conditioningScale: Float?
    /// The fraction of the steps after which the ControlNet starts to apply, in [0, 1).
    public var guidanceStart: Double
    /// The fraction of the steps after which it stops, in (start, 1].
    public var guidanceEnd: Double
    /// How the control image is fitted to the working size: stretched (diffusers; the web UI's "Just
    /// Resize"), cropped ("Crop and Resize") or padded ("Resize and Fill").
    public var resizeMode: ImageResizeMode
    /// The web UI's control mode "My prompt is more important": residual `i` of `n` scaled by
    /// `0.825^(n - 1 - i)` (the mid block's by 1), so the deep layers steer and the early ones fade.
    public var decayingScales: Bool

    public init(model: ControlNetModel, image: Image, conditioningScale: Float? = nil, guidanceStart: Double = 0, guidanceEnd: Double = 1,
                resizeMode: ImageResizeMode = .default, decayingScales: Bool = false) {
        self.model = model
        self.image = image
        self.conditioningScale = conditioningScale
        self.guidanceStart = guidanceStart
        self.guidanceEnd = guidanceEnd
        self.resizeMode = resizeMode
        self.decayingScales = decayingScales
    }

    /// diffusers' `check_inputs` for the control guidance window and scale.
    func validate(index i: Int) throws {
        let name = "ControlNet \(i + 1)"
        guard conditioningScale?.isFinite ?? true else { throw PipelineError.invalidArgument("\(name): conditioning scale must be a finite number") }
        guard guidanceStart.isFinite, guidanceEnd.isFinite else { throw PipelineError.invalidArgument("\(name): guidance start and end must be finite numbers") }
        guard guidanceStart < guidanceEnd else {
            throw PipelineError.invalidArgument("\(name): control guidance start \(guidanceStart) must be below control guidance end \(guidanceEnd)")
        }
        guard guidanceStart >= 0 else { throw PipelineError.invalidArgument("\(name): control guidance start \(guidanceStart) must be >= 0") }
        guard guidanceEnd <= 1 else { throw PipelineError.invalidArgument("\(name): control guidance end \(guidanceEnd) must be <= 1") }
    }

    /// The scale at step `i` of `n` (0 outside the window) for a pipeline whose default scale is `defaultScale`.
    func scale(step i: Int, of n: Int, defaultScale: Float) -> Float { (conditioningScale ?? defaultScale) * keep(step: i, of: n) }

    /// The fraction of the steps applied at step `i` of `n`: 1 inside the window, 0 outside (diffusers'
    /// `controlnet_keep`: `1 - (i / n < start or (i + 1) / n > end)`).
    func keep(step i: Int, of n: Int) -> Float {
        Double(i) / Double(n) < guidanceStart || Double(i + 1) / Double(n) > guidanceEnd ? 0 : 1
    }
}
