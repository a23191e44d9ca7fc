import DiffusionTensor

/// Entry points that take 8-bit images (as loaded from PNG/JPEG) and apply diffusers' image and mask
/// processors before running the pipelines.
extension GenerationResult {
    /// The images as 8-bit RGB values (diffusers' PIL output).
    public func rgbImages() throws -> [Image] { try Image.fromTensor(images) }

    func replacingImages(_ newImages: Tensor) -> GenerationResult {
        GenerationResult(images: newImages, latents: latents, seed: seed, schedulerName: schedulerName, denoisingSeconds: denoisingSeconds,
                         stoppedAfterStep: stoppedAfterStep)
    }
}

extension StableDiffusionImg2ImgPipeline {
    /// Image-to-image from an 8-bit image: resized (Lanczos, as diffusers) to `options.height`/`width`
    /// when given, else to its own size rounded down to a multiple of the VAE scale factor.
    public func callAsFunction(_ options: GenerationOptions, image: Image, strength: Double? = nil,
                               progress: ProgressHandler? = nil) throws -> GenerationResult {
        let processor = try VaeImageProcessor(vaeScaleFactor: components.vaeScaleFactor)
        let tensor = try processor.preprocess(image.toRGB(), height: options.height, width: options.width)
        return try self(options, image: tensor, strength: strength, progress: progress)
    }
}

extension StableDiffusionInpaintPipeline {
    /// Inpainting from 8-bit images, as diffusers' `__call__` with PIL inputs.
    /// - Parameters:
    ///   - mask: white = repaint, black = keep (converted to grayscale, binarised at 0.5); resized to the
    ///     working size, so it may differ in size from the image.
    ///   - paddingMaskCrop: inpaint only the mask's bounding box plus this margin (grown to the working
    ///     aspect ratio) at the working resolution, then paste the result back over the untouched original.
    public func callAsFunction(_ options: GenerationOptions, image: Image, mask: Image, strength: Double? = nil,
                               paddingMaskCrop: Int? = nil, progress: ProgressHandler? = nil) throws -> GenerationResult {
        let height = options.height ?? defaultSize.height
        let width = options.width ?? defaultSize.width
        if let pad = paddingMaskCrop, pad < 0 { throw PipelineError.invalidArgument("padding mask crop must be >= 0, got \(pad)") }
        let scale = components.vaeScaleFactor
        let imageProcessor = try VaeImageProcessor(vaeScaleFactor: scale)
        let maskProcessor = VaeImageProcessor.maskProcessor(vaeScaleFactor: scale)
        let crop = try paddingMaskCrop.map { try VaeImageProcessor.cropRegion(mask: mask, width: width, height: height, pad: $0) }
        let mode: ImageResizeMode = crop == nil ? .default : .fill
        let rgb = image.toRGB()
        let imageTensor = try imageProcessor.preprocess(rgb, height: height, width: width, resizeMode: mode, cropCoords: crop)
        let maskTensor = try maskProcessor.preprocess(mask, height: height, width: width, resizeMode: mode, cropCoords: crop)
        var options = options
        options.height = height
        options.width = width
        options.controlImageCrop = crop
        let result = try self(options, image: imageTensor, mask: maskTensor, strength: strength, progress: progress)
        guard let crop else { return result }
        let pasted = try result.rgbImages().map { try imageProcessor.applyOverlay(mask: mask, initImage: rgb, image: $0, cropCoords: crop) }
        return result.replacingImages(try Tensor.concatenate(pasted.map { $0.tensor() }, axis: 0))
    }
}

extension StableDiffusionDepth2ImgPipeline {
    /// Depth-to-image from an 8-bit image, with a depth map (`DepthMapFile.load`) or, when nil, the
    /// folder's depth estimator. The image is resized to `options.height`/`width` when given, else
    /// rounded down to a multiple of 8 (diffusers sizes the depth map from the unrounded size).
    public func callAsFunction(_ options: GenerationOptions, image: Image, depthMap: Tensor? = nil, strength: Double = 0.8,
                               progress: ProgressHandler? = nil) throws -> GenerationResult {
        let rgb = image.toRGB()
        let processor = try VaeImageProcessor(vaeScaleFactor: components.vaeScaleFactor)
        let tensor = try processor.preprocess(rgb, height: options.height, width: options.width)
        return try self(options, image: tensor, originalSize: (options.height ?? rgb.height, options.width ?? rgb.width),
                        depthMap: depthMap, rgb8: rgb, strength: strength, progress: progress)
    }
}
