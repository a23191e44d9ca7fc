import DiffusionTensor

/// What the pipelines need to know of a latent autoencoder's config.
public protocol LatentAutoencoderConfig: Sendable {
    var latentChannels: Int { get }
    /// Pixels per latent along each side (8 for the SD VAEs and TAESD).
    var scaleFactor: Int { get }
    /// Latents are multiplied by this for the UNet (`scaling_factor`: 0.18215 SD, 0.13025 SDXL, 1 TAESD).
    var scalingFactor: Float { get }
}

/// What an encoder gives: AutoencoderKL a distribution to sample (one draw from the generator),
/// AutoencoderTiny the latents themselves (no draw), as diffusers' `retrieve_latents` treats them.
public enum LatentEncoding: Sendable {
    case distribution(DiagonalGaussian)
    case latents(Tensor)
}

/// The seam between the pipelines and the VAE: diffusers' `AutoencoderKL` and `AutoencoderTiny` (TAESD),
/// so decoding, encoding, tiling and `--vae` work with either. Images are NHWC in [-1, 1], latents NHWC and
/// unscaled (divided by `config.scalingFactor`).
public protocol LatentAutoencoder: AnyObject, Sendable {
    associatedtype Config: LatentAutoencoderConfig
    var config: Config { get }
    /// False when loaded for decoding only (text-to-image).
    var hasEncoder: Bool { get }
    func encodeLatents(_ images: Tensor) throws -> LatentEncoding
    func decode(_ latents: Tensor) throws -> Tensor
    /// `decode` in tiles of `tilePixels` output pixels, for large outputs (see `TiledDecoding`).
    func decodeTiled(_ latents: Tensor, tilePixels: Int) throws -> Tensor
}

extension LatentAutoencoder {
    public func decodeTiled(_ latents: Tensor) throws -> Tensor { try decodeTiled(latents, tilePixels: TiledDecoding.defaultTilePixels) }
}

extension AutoencoderKLConfig: LatentAutoencoderConfig {}

extension AutoencoderKL: LatentAutoencoder {
    public func encodeLatents(_ images: Tensor) throws -> LatentEncoding { .distribution(try encode(images)) }
}
