import Foundation
import StableDiffusion

/// What the HTTP side needs to know of a model (names, kind, defaults), without its weights: a front of a
/// shared queue answers /sd-models, the page and request validation from this, as workers publish it.
public struct ModelDescriptor: Codable, Sendable, Equatable {
    /// How A1111 lists the checkpoint (never a server path).
    public var name: String
    public var kind: ServedModel.Kind
    public var isSDXL: Bool
    /// The size txt2img draws when none is asked for.
    public var defaultSide: Int
    public var defaultSteps: Int
    public var defaultGuidanceScale: Float
    /// The model's own scheduler class (diffusers' `_class_name`), for the page's default sampler.
    public var schedulerClassName: String?
    /// The SDXL refiner loaded beside it (`--refiner`), by name.
    public var refinerName: String?
    /// The VAE given with `--vae`, by name; nil: the model's own.
    public var vaeName: String?
    /// The ControlNets loaded with it (`--controlnet`), by name, and the preprocessors it can run.
    public var controlNetNames: [String] = []
    public var controlModules: [ControlPreprocessor] = []
}

extension ServedModel.Kind: Codable {}
extension ControlPreprocessor: Codable {}

extension ServedModel {
    public var descriptor: ModelDescriptor {
        ModelDescriptor(name: name, kind: kind, isSDXL: components.family == .stableDiffusionXL, defaultSide: defaultSide,
                        defaultSteps: components.defaultSteps, defaultGuidanceScale: components.defaultGuidanceScale,
                        schedulerClassName: components.schedulerConfig.className, refinerName: refiner?.name, vaeName: vaeName,
                        controlNetNames: controlNets.map(\.name), controlModules: controlModules)
    }
}
