import DiffusionTensor

/// A cheap look at latents while they are being denoised: each pixel of the latent grid mapped to RGB by
/// one fixed linear map of the four SD latent channels (the "cheap approximation" AUTOMATIC1111 offers
/// for live previews, fitted by Keturn on SD 1.x latents), instead of running the VAE decoder. The picture
/// is 1/8 of the output size and only suggests colours and layout.
public enum LatentPreview {
    /// Rows: latent channels 0...3; columns: R, G, B.
    static let factors: [[Float]] = [
        [0.298, 0.207, 0.208],
        [0.187, 0.286, 0.173],
        [-0.158, 0.189, 0.264],
        [-0.184, -0.271, -0.473],
    ]

    /// Batch item `index` of the latents decoded by `vae` (a tiny autoencoder for live previews: AUTOMATIC1111's
    /// "TAESD" preview), at full size, as a finished picture is decoded and converted.
    public static func decoded(_ latents: Tensor, index: Int = 0, vae: any LatentAutoencoder) throws -> Image {
        guard latents.rank == 4, index >= 0, index < latents.shape[0] else {
            throw TensorError.shapeMismatch("preview: no batch item \(index) in latents \(latents.shape)")
        }
        let one = try latents.slice(axis: 0, index..<(index + 1))
        let pixels = try PipelineSupport.decode(one, vae: vae)
        return try GenerationResult(images: pixels, latents: one, seed: 0, schedulerName: "", denoisingSeconds: 0).rgbImages()[0]
    }

    /// The preview of batch item `index` of NHWC latents, or nil when they do not have 4 channels.
    public static func image(_ latents: Tensor, index: Int = 0) -> Image? {
        guard latents.rank == 4, latents.shape[3] == 4, index >= 0, index < latents.shape[0] else { return nil }
        let (h, w) = (latents.shape[1], latents.shape[2])
        var pixels = [UInt8](repeating: 0, count: h * w * 3)
        latents.withUnsafeBufferPointer { x in
            let base = index * h * w * 4
            for p in 0..<(h * w) {
                for c in 0..<3 {
                    var v: Float = 0
                    for k in 0..<4 { v += x[base + p * 4 + k] * factors[k][c] }
                    let scaled = ((v + 1) / 2 * 255).rounded()
                    pixels[p * 3 + c] = UInt8(max(0, min(255, scaled.isFinite ? scaled : 0)))
                }
            }
        }
        return try? Image(width: w, height: h, channels: 3, pixels: pixels)
    }
}
