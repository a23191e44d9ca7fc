import Foundation
import DiffusionTensor

/// Loading a VAE on its own, for `--vae` / `withVAE`: diffusers' `AutoencoderKL.from_pretrained` or
/// `AutoencoderTiny.from_pretrained` on a VAE folder (`config.json` + weights: `stabilityai/sd-vae-ft-mse`,
/// `madebyollin/taesd`), or a model folder's `vae/`.
public enum Autoencoders {
    public static func load(directory: URL, variant: String? = nil, includeEncoder: Bool = true,
                            precision: ComputePrecision = .fp32) throws -> any LatentAutoencoder {
        var folder = directory
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent("model_index.json").path) {
            folder = directory.appendingPathComponent("vae")
        }
        let configURL = folder.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: configURL.path) else {
            throw PipelineError.badModel(path: folder.path, detail: "no config.json: expected a diffusers VAE folder (AutoencoderKL or AutoencoderTiny) or a model folder with vae/")
        }
        let reader = try ConfigReader(contentsOf: configURL)
        let className = try reader.string("_class_name") ?? "AutoencoderKL"
        let weights = try WeightFiles.open(directory: folder, stems: ["diffusion_pytorch_model"], variant: variant)
        switch className {
        case "AutoencoderKL":
            return try AutoencoderKL(config: AutoencoderKLConfig(ConfigReader(contentsOf: configURL)), weights: weights,
                                     includeEncoder: includeEncoder, precision: precision.forModel(.vae))
        case "AutoencoderTiny":
            return try AutoencoderTiny(config: AutoencoderTinyConfig(ConfigReader(contentsOf: configURL)), weights: weights,
                                       includeEncoder: includeEncoder, precision: precision.forModel(.vae))
        default:
            throw PipelineError.badModel(path: configURL.path, detail: "_class_name \(className) is not a supported VAE (AutoencoderKL, AutoencoderTiny)")
        }
    }
}

extension Autoencoders {
    /// A standalone VAE file in the original layout, as AUTOMATIC1111 loads them
    /// (`vae-ft-mse-840000-ema-pruned.safetensors`, `sdxl_vae.safetensors`; `encoder.*`/`decoder.*`, with or
    /// without `first_stage_model.`). The file has no config: the model's own VAE config shapes it, as the
    /// web UI keeps the model's scaling factor.
    public static func load(singleFile url: URL, config: AutoencoderKLConfig, includeEncoder: Bool = true,
                            precision: ComputePrecision = .fp32) throws -> AutoencoderKL {
        let checkpoint = try SingleFileCheckpoint(url: url)
        let names = checkpoint.source.tensorNames
        let prefix = names.contains { $0.hasPrefix(SingleFileDetector.vaePrefix) } ? SingleFileDetector.vaePrefix : ""
        guard names.contains(prefix + "decoder.conv_in.weight") else {
            throw PipelineError.badModel(path: url.path, detail: "has no \(prefix)decoder.conv_in.weight: expected a VAE file (encoder.*, decoder.*)")
        }
        let converter = OriginalCheckpointConverter(source: checkpoint.source, layout: SingleFileLayout(textEncoders: [], usesEMA: false))
        return try AutoencoderKL(config: config, weights: converter.vae(config, prefix: prefix), includeEncoder: includeEncoder,
                                 precision: precision.forModel(.vae))
    }

    /// What `--vae` names: a VAE file (the model's VAE config shapes it) or a folder.
    public static func load(_ location: URL, for components: StableDiffusionComponents, includeEncoder: Bool = true,
                            precision: ComputePrecision = .fp32) throws -> any LatentAutoencoder {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: location.path, isDirectory: &isDir), !isDir.boolValue {
            guard let own = components.vae as? AutoencoderKL else {
                throw PipelineError.invalidArgument("VAE file \(location.path): the model's own VAE is not an AutoencoderKL, so there is no config to read the file with")
            }
            return try load(singleFile: location, config: own.config, includeEncoder: includeEncoder, precision: precision)
        }
        return try load(directory: location, includeEncoder: includeEncoder, precision: precision)
    }
}

extension Autoencoders {
    /// Where a `--vae` argument points: an existing file or folder as it is, else a Hub repo id
    /// (`owner/name[@revision]`: `madebyollin/taesd`, `stabilityai/sd-vae-ft-mse`) downloaded into the Hugging
    /// Face cache as `from_pretrained` would (`HubClient.modelSnapshot`).
    public static func resolve(_ argument: String, variant: String? = nil, progress: HubProgressHandler? = nil) throws -> URL {
        if FileManager.default.fileExists(atPath: argument) { return URL(fileURLWithPath: argument) }
        guard let repo = try HubRepoID.parseUnlessLocal(argument) else {
            throw PipelineError.badModel(path: argument, detail: "is not a VAE file or folder, nor a Hub repo id (owner/name[@revision])")
        }
        return try HubClient().modelSnapshot(repo: repo.id, revision: repo.revision ?? "main", variant: variant, progress: progress)
    }
}

extension StableDiffusionComponents {
    /// The same model with `vae` decoding (and encoding) in place of its own, as diffusers'
    /// `from_pretrained(..., vae=...)` or AUTOMATIC1111's VAE setting. Its latent channels must be the
    /// UNet's, its pixels per latent the model's own VAE's, and an `AutoencoderKL` trained for the other family (SDXL's scaling factor 0.13025 against
    /// SD's 0.18215) is refused; both are named. Nothing else is reloaded.
    /// - Parameter name: how to name the VAE in errors (its folder or repo id).
    public func withVAE(_ vae: any LatentAutoencoder, name: String) throws -> StableDiffusionComponents {
        let channels = unet.config.outChannels
        guard vae.config.latentChannels == channels else {
            throw PipelineError.invalidArgument("VAE \(name) has \(vae.config.latentChannels) latent channels; the model \(directory.lastPathComponent) needs \(channels)")
        }
        guard vae.config.scaleFactor == self.vae.config.scaleFactor else {
            throw PipelineError.invalidArgument("VAE \(name) has \(vae.config.scaleFactor) pixels per latent; the model \(directory.lastPathComponent) has \(self.vae.config.scaleFactor)")
        }
        if vae is AutoencoderKL, let own = self.vae as? AutoencoderKL {
            let xl: Float = 0.13025
            let theirs = vae.config.scalingFactor == xl, ours = own.config.scalingFactor == xl
            if theirs != ours {
                throw PipelineError.invalidArgument("VAE \(name) is an \(theirs ? "SDXL" : "SD 1.x/2.x") VAE (scaling_factor \(vae.config.scalingFactor)); the model \(directory.lastPathComponent) is \(ours ? "SDXL" : "SD 1.x/2.x") (\(own.config.scalingFactor))")
            }
        }
        return replacing(vae: vae)
    }
}
