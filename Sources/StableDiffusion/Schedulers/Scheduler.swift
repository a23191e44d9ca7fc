import Foundation

/// A diffusers noise scheduler. Method names and semantics follow diffusers (`set_timesteps`,
/// `scale_model_input`, `step`, `add_noise`, `init_noise_sigma`, `order`, `timesteps`), because the
/// pipelines (txt2img, img2img's strength, inpainting) are written against them.
///
/// Tensors are element-wise here, so any layout works, except where noise is drawn: rank-4 tensors
/// are taken to be NHWC latents, and noise is drawn in torch's NCHW order (see `RandomGenerators.randnLike`).
public protocol Scheduler: Sendable {
    /// The whole config this scheduler was made from (unknown keys included, as `from_config` keeps them).
    var config: SchedulerConfig { get }
    var kind: SchedulerKind { get }
    /// Model evaluations per timestep entry (2 for Heun, whose `timesteps` repeat), as diffusers' `order`.
    var order: Int { get }
    /// Standard deviation of the initial noise (`init_noise_sigma`); valid after `setTimesteps`.
    var initNoiseSigma: Float { get }
    /// The timesteps to pass to the model, in order (integers for most, float32 values for sigma-based ones).
    var timesteps: [Double] { get }
    /// Index of the first timestep that will be used (set by img2img-style pipelines), as `set_begin_index`.
    mutating func setBeginIndex(_ index: Int)
    mutating func setTimesteps(_ numInferenceSteps: Int) throws
    mutating func scaleModelInput(_ sample: Tensor, timestep: Double) throws -> Tensor
    /// One denoising step; returns `prev_sample`. Ancestral schedulers draw noise from `generator`
    /// (and throw when it is nil); the others ignore it.
    mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, generator: inout RandomGenerators?) throws -> Tensor
    /// Noises `originalSamples` to `timesteps` (one per batch item, or one for all).
    func addNoise(originalSamples: Tensor, noise: Tensor, timesteps: [Double]) throws -> Tensor
    /// The pipelines' `eta`, for the schedulers whose `step` takes it (DDIM's eta, TCD's gamma), as
    /// diffusers' `prepare_extra_step_kwargs` passes it; the others ignore it.
    mutating func setEta(_ eta: Float)
}

extension Scheduler {
    public mutating func setEta(_ eta: Float) {}
}

extension Scheduler {
    /// `step` for schedulers that draw no noise.
    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor) throws -> Tensor {
        var none: RandomGenerators? = nil
        return try step(modelOutput: modelOutput, timestep: timestep, sample: sample, generator: &none)
    }
}

/// The supported scheduler classes, by diffusers `_class_name` and by CLI name.
public enum SchedulerKind: String, CaseIterable, Sendable {
    case pndm, ddim, ddpm, lms, euler, eulerAncestral, heun, dpmSolverMultistep, unipc, lcm, tcd

    public var className: String {
        switch self {
        case .pndm: return "PNDMScheduler"
        case .ddim: return "DDIMScheduler"
        case .ddpm: return "DDPMScheduler"
        case .lms: return "LMSDiscreteScheduler"
        case .euler: return "EulerDiscreteScheduler"
        case .eulerAncestral: return "EulerAncestralDiscreteScheduler"
        case .heun: return "HeunDiscreteScheduler"
        case .dpmSolverMultistep: return "DPMSolverMultistepScheduler"
        case .unipc: return "UniPCMultistepScheduler"
        case .lcm: return "LCMScheduler"
        case .tcd: return "TCDScheduler"
        }
    }

    public var cliName: String {
        switch self {
        case .pndm: return "pndm"
        case .ddim: return "ddim"
        case .ddpm: return "ddpm"
        case .lms: return "lms"
        case .euler: return "euler"
        case .eulerAncestral: return "euler-a"
        case .heun: return "heun"
        case .dpmSolverMultistep: return "dpm++2m"
        case .unipc: return "unipc"
        case .lcm: return "lcm"
        case .tcd: return "tcd"
        }
    }
}

/// Creating schedulers from configs, like diffusers' `SchedulerClass.from_config(config)`.
public enum Schedulers {
    /// The names `sd --scheduler` accepts.
    public static let cliNames = ["pndm", "ddim", "ddpm", "lms", "euler", "euler-a", "heun", "dpm++2m", "dpm++2m-karras", "unipc", "lcm", "tcd"]

    /// The scheduler named by the config's `_class_name`.
    public static func make(config: SchedulerConfig) throws -> any Scheduler {
        guard let name = config.className else {
            throw SchedulerError.badFile(file: config.source, detail: "missing _class_name")
        }
        guard let kind = SchedulerKind.allCases.first(where: { $0.className == name }) else {
            throw SchedulerError.unknownClass(file: config.source, name: name)
        }
        return try make(kind, config: config)
    }

    /// `kind` made from another scheduler's config (its keys kept, unknown ones ignored).
    public static func make(_ kind: SchedulerKind, config: SchedulerConfig) throws -> any Scheduler {
        switch kind {
        case .pndm: return try PNDMScheduler(config: config)
        case .ddim: return try DDIMScheduler(config: config)
        case .euler: return try EulerDiscreteScheduler(config: config)
        case .eulerAncestral: return try EulerAncestralDiscreteScheduler(config: config)
        case .dpmSolverMultistep: return try DPMSolverMultistepScheduler(config: config)
        case .ddpm: return try DDPMScheduler(config: config)
        case .lms: return try LMSDiscreteScheduler(config: config)
        case .heun: return try HeunDiscreteScheduler(config: config)
        case .unipc: return try UniPCMultistepScheduler(config: config)
        case .lcm: return try LCMScheduler(config: config)
        case .tcd: return try TCDScheduler(config: config)
        }
    }

    /// The eta a front end uses when none is given: TCD's default gamma when the scheduler that will run is
    /// TCD (named by `cliName`, else the config's class), else 0 (diffusers' pipelines' default).
    public static func defaultEta(cliName: String?, config: SchedulerConfig?) -> Float {
        let className = cliName.flatMap { name in SchedulerKind.allCases.first { $0.cliName == name }?.className } ?? config?.className
        return className == SchedulerKind.tcd.className ? TCDScheduler.defaultGamma : 0
    }

    /// A CLI name (`pndm ddim ddpm lms euler euler-a heun dpm++2m dpm++2m-karras unipc lcm tcd`) applied to the
    /// model's config. `dpm++2m` is DPMSolverMultistep with `algorithm_type` dpmsolver++ and
    /// `solver_order` 2; `dpm++2m-karras` adds `use_karras_sigmas`.
    public static func make(cliName: String, config: SchedulerConfig) throws -> any Scheduler {
        var config = config
        switch cliName {
        case "dpm++2m", "dpm++2m-karras":
            config.values["algorithm_type"] = .string("dpmsolver++")
            config.values["solver_order"] = .int(2)
            config.values["use_karras_sigmas"] = .bool(cliName == "dpm++2m-karras")
            return try make(.dpmSolverMultistep, config: config)
        default:
            guard let kind = SchedulerKind.allCases.first(where: { $0.cliName == cliName }) else {
                throw SchedulerError.unknownName(cliName)
            }
            return try make(kind, config: config)
        }
    }
}

// MARK: - Element-wise helpers (float32, like the torch ops they stand for)

extension Tensor {
    func schedMap(_ f: (Float) -> Float) -> Tensor {
        var out = Tensor(uninitializedShape: shape)
        withUnsafeBufferPointer { a in
            out.withUnsafeMutableBufferPointer { o in for i in 0..<a.count { o[i] = f(a[i]) } }
        }
        return out
    }

    static func schedZip(_ x: Tensor, _ y: Tensor, _ what: String, _ f: (Float, Float) -> Float) throws -> Tensor {
        guard x.shape == y.shape else {
            throw TensorError.shapeMismatch("\(what): shapes \(x.shape) and \(y.shape) differ")
        }
        var out = Tensor(uninitializedShape: x.shape)
        x.withUnsafeBufferPointer { a in
            y.withUnsafeBufferPointer { b in
                out.withUnsafeMutableBufferPointer { o in for i in 0..<a.count { o[i] = f(a[i], b[i]) } }
            }
        }
        return out
    }

    static func schedZip3(_ x: Tensor, _ y: Tensor, _ z: Tensor, _ what: String, _ f: (Float, Float, Float) -> Float) throws -> Tensor {
        guard x.shape == y.shape, x.shape == z.shape else {
            throw TensorError.shapeMismatch("\(what): shapes \(x.shape), \(y.shape) and \(z.shape) differ")
        }
        var out = Tensor(uninitializedShape: x.shape)
        x.withUnsafeBufferPointer { a in
            y.withUnsafeBufferPointer { b in
                z.withUnsafeBufferPointer { c in
                    out.withUnsafeMutableBufferPointer { o in for i in 0..<a.count { o[i] = f(a[i], b[i], c[i]) } }
                }
            }
        }
        return out
    }
}

/// Per-batch-item coefficients for `add_noise`: `timesteps` has one entry per item or one for all.
func perItem(_ tensor: Tensor, _ timesteps: [Double]) throws -> (items: Int, itemSize: Int) {
    let batch = tensor.shape.first ?? 1
    guard timesteps.count == batch || timesteps.count == 1 else {
        throw SchedulerError.invalidUse("add_noise: \(timesteps.count) timesteps for a batch of \(batch)")
    }
    return (batch, batch == 0 ? 0 : tensor.count / batch)
}

/// `sqrt(alpha_bar) * x + sqrt(1 - alpha_bar) * noise` per batch item (DDPM-family add_noise).
func addNoiseAlphas(_ alphasCumprod: [Float], _ x: Tensor, _ noise: Tensor, _ timesteps: [Double]) throws -> Tensor {
    guard x.shape == noise.shape else { throw TensorError.shapeMismatch("add_noise: sample \(x.shape) and noise \(noise.shape) differ") }
    let (items, size) = try perItem(x, timesteps)
    var out = Tensor(uninitializedShape: x.shape)
    try x.withUnsafeBufferPointer { a in
        try noise.withUnsafeBufferPointer { n in
            try out.withUnsafeMutableBufferPointer { o in
                for b in 0..<items {
                    let t = Int(timesteps[timesteps.count == 1 ? 0 : b])
                    guard t >= 0, t < alphasCumprod.count else { throw SchedulerError.invalidUse("add_noise: timestep \(t) out of range") }
                    let ac = alphasCumprod[t]
                    let sa = ac.squareRoot(), sb = (1 - ac).squareRoot()
                    for i in b * size..<(b + 1) * size { o[i] = sa * a[i] + sb * n[i] }
                }
            }
        }
    }
    return out
}

/// Integer timesteps of the DDPM family, descending, for a spacing (DDIM/DDPM/PNDM/DPM/UniPC `set_timesteps`).
func spacedTimesteps(_ spacing: TimestepSpacing, _ n: Int, train: Int, offset: Int) -> [Int] {
    switch spacing {
    case .linspace:
        return npLinspace(0, Double(train - 1), n).map { Int(roundEven($0)) }.reversed()
    case .leading:
        let ratio = train / n
        return (0..<n).map { $0 * ratio + offset }.reversed()
    case .trailing:
        return npArangeDown(Double(train), 0, -Double(train) / Double(n)).map { Int(roundEven($0)) - 1 }
    }
}
