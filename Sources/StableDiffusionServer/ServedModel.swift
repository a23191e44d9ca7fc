import Foundation
import StableDiffusion

/// The one model a server holds, loaded once at start, and the pipelines it can run.
public final class ServedModel: @unchecked Sendable {
    /// What the model is, which decides what each endpoint does with it.
    public enum Kind: String, Sendable {
        /// An ordinary 4-channel UNet: txt2img, img2img, inpainting (diffusers' 4-channel path).
        case standard
        /// A 9-channel inpainting UNet: img2img always inpaints (a missing mask is all white).
        case inpainting
        /// Depth-conditioned (5 channels): img2img is depth2img.
        case depth
        /// The x4 upscaler: img2img and extra-single-image upscale.
        case upscaler
    }

    /// The pipelines over one set of components (the base model, or it with a request's LoRAs merged).
    struct Pipelines {
        let components: StableDiffusionComponents
        let txt2img: StableDiffusionPipeline?
        let img2img: StableDiffusionImg2ImgPipeline?
        let inpaint: StableDiffusionInpaintPipeline?
        let depth: StableDiffusionDepth2ImgPipeline?
        let upscale: StableDiffusionUpscalePipeline?

        init(_ c: StableDiffusionComponents, kind: Kind, variant: String?) throws {
            components = c
            // An SDXL refiner only refines: image-to-image and inpainting.
            txt2img = kind == .standard && !c.hasOnlySecondTextEncoder ? try StableDiffusionPipeline(components: c) : nil
            img2img = kind == .standard ? try StableDiffusionImg2ImgPipeline(components: c) : nil
            inpaint = kind == .standard || kind == .inpainting ? try StableDiffusionInpaintPipeline(components: c) : nil
            depth = kind == .depth ? try StableDiffusionDepth2ImgPipeline(loadingEstimatorFor: c, variant: variant) : nil
            upscale = kind == .upscaler ? try StableDiffusionUpscalePipeline(components: c) : nil
        }
    }

    /// An SDXL refiner loaded beside an SDXL base (`sd serve --refiner`), for A1111's `refiner_checkpoint`.
    public struct Refiner: Sendable {
        /// How A1111 lists it (the folder or file name, or the Hub repo id).
        public let name: String
        let pipeline: StableDiffusionImg2ImgPipeline
    }

    /// The components as loaded at start (with the server's own --lora/--embedding adapters).
    public let components: StableDiffusionComponents
    public let refiner: Refiner?
    /// The VAE given with `--vae` (its folder or file name), in the model's VAE's place; nil: the model's own.
    public let vaeName: String?
    public let kind: Kind
    /// How A1111 lists the checkpoint: the folder or file name, or the Hub repo id (never a server path).
    public let name: String
    /// How prompts are read unless a request says otherwise (`--prompt-syntax`).
    public let promptSyntax: PromptSyntax
    /// Where `<lora:NAME:SCALE>` prompt tags find NAME.safetensors; nil: tags are an error.
    public let loraDirectory: URL?
    private let variant: String?
    /// The pipelines of the LoRA set in use; replaced only on the worker thread, between jobs.
    private(set) var active: Pipelines
    /// The ControlNets loaded with `--controlnet`, for A1111's ControlNet API.
    public internal(set) var controlNets: [ServedControlNet] = []

    /// The single place the server loads weights: anything `--model` accepts (folder, single file, Hub repo id).
    public static func load(model: String, variant: String? = nil, configDirectory: URL? = nil, predictionType: String? = nil,
                            adapters: ModelAdapters = ModelAdapters(), loraDirectory: URL? = nil, promptSyntax: PromptSyntax = .plain,
                            hubProgress: HubProgressHandler? = nil, precision: ComputePrecision = .fp32,
                            refiner: String? = nil, vae: String? = nil, controlNets: [String] = []) throws -> ServedModel {
        let location = try ModelLocation.classify(model)
        var components = try StableDiffusionComponents(location: location, variant: variant, configDirectory: configDirectory,
                                                       predictionType: predictionType, adapters: adapters, hubProgress: hubProgress,
                                                       precision: precision)
        let vaeName = vae.map { FileManager.default.fileExists(atPath: $0) ? URL(fileURLWithPath: $0).lastPathComponent : $0 }
        if let vae, let vaeName {
            let url = try Autoencoders.resolve(vae, progress: hubProgress)
            components = try components.withVAE(Autoencoders.load(url, for: components, precision: precision), name: vaeName)
        }
        var loadedRefiner: Refiner?
        if let refiner {
            let refinerLocation = try ModelLocation.classify(refiner)
            // Only the ensemble's second half runs on it: from latents, so without the VAE encoder.
            let c = try StableDiffusionComponents(location: refinerLocation, variant: variant, includeVAEEncoder: false,
                                                  hubProgress: hubProgress, precision: precision)
            loadedRefiner = try Refiner(name: displayName(refinerLocation), components: c, base: components)
        }
        let served = try ServedModel(components: components, variant: variant, name: displayName(location), loraDirectory: loraDirectory,
                                     promptSyntax: promptSyntax, refiner: loadedRefiner, vaeName: vaeName)
        served.controlNets = try controlNets.map { argument in
            let net = try ServedControlNet.load(argument, precision: precision, progress: hubProgress)
            try net.model.checkFits(components, name: "--controlnet \(net.name)")
            return net
        }
        return served
    }

    /// The folder or file name, or the Hub repo id: never a server path.
    static func displayName(_ location: ModelLocation) -> String {
        switch location {
        case .hubRepository(let repo): return repo.id
        case .folder(let url), .singleFile(let url): return url.lastPathComponent
        }
    }

    public init(components c: StableDiffusionComponents, variant: String? = nil, name: String? = nil, loraDirectory: URL? = nil,
                promptSyntax: PromptSyntax = .plain, refiner: Refiner? = nil, vaeName: String? = nil) throws {
        components = c
        self.refiner = refiner
        self.vaeName = vaeName
        self.name = name ?? c.directory.lastPathComponent
        self.variant = variant
        self.loraDirectory = loraDirectory
        self.promptSyntax = promptSyntax
        let channels = c.unet.config.inChannels
        let latent = c.vae.config.latentChannels
        if c.lowResSchedulerConfig != nil {
            kind = .upscaler
        } else if channels == 9 {
            kind = .inpainting
        } else if channels == latent + 1 {
            kind = .depth
        } else {
            kind = .standard
        }
        active = try Pipelines(c, kind: kind, variant: variant)
    }

    /// The size txt2img draws when none is asked for (UNet sample size x VAE scale factor).
    var defaultSide: Int { components.defaultImageSide }

    /// The pipelines for a request whose prompt named `loras` in `<lora:…>` tags: the base model's when
    /// none, else the base model rebuilt with them merged (kept until a request wants another set).
    /// Called on the worker thread only.
    func pipelines(adding loras: [LoRA]) throws -> Pipelines {
        var wanted = components.adapters
        wanted.loras += loras
        if active.components.adapters == wanted { return active }
        let c = wanted == components.adapters ? components : try components.withAdapters(wanted, variant: variant)
        active = try Pipelines(c, kind: kind, variant: variant)
        return active
    }
}

extension ServedModel.Refiner {
    /// A refiner for `base`: both SDXL, or an error naming the refiner.
    public init(name: String, components: StableDiffusionComponents, base: StableDiffusionComponents) throws {
        guard base.family == .stableDiffusionXL else {
            throw PipelineError.invalidArgument("--refiner needs an SDXL base model; this model is SD 1.x/2.x")
        }
        guard components.family == .stableDiffusionXL else {
            throw PipelineError.invalidArgument("--refiner \(name) is an SD 1.x/2.x model; it must be an SDXL model (its latents are SDXL's)")
        }
        self.name = name
        pipeline = try StableDiffusionImg2ImgPipeline(components: components)
    }
}
