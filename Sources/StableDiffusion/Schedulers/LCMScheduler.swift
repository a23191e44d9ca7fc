import Foundation

/// diffusers `LCMScheduler` (Latent Consistency Models: LCM-distilled UNets and LCM-LoRA): the timesteps are
/// a subset of the `original_inference_steps`-long distillation schedule (`timestep_spacing` is not read,
/// as in diffusers), each step maps the model's prediction to the consistency function's output with the
/// boundary-condition scalings, and every step but the last re-noises it to the next timestep with fresh
/// noise from the generator.
public struct LCMScheduler: Scheduler {
    public let config: SchedulerConfig
    public var kind: SchedulerKind { .lcm }
    public var order: Int { 1 }
    public var initNoiseSigma: Float { 1 }
    public var timesteps: [Double] { position.timesteps }
    public let schedule: NoiseSchedule
    /// The consistency function's output at the last step (`denoised`), which LCM pipelines decode.
    public private(set) var denoised: Tensor?

    let prediction: String
    let clipSample: Bool
    let clipSampleRange: Float
    let thresholding: Thresholding?
    let originalInferenceSteps: Int
    let timestepScaling: Double
    let finalAlphaCumprod: Float
    private var position = ConsistencyPosition()

    public init(config: SchedulerConfig) throws {
        self.config = config
        schedule = try NoiseSchedule(config: config, supportsZeroSNR: true)
        prediction = try config.choice("prediction_type", "epsilon", ["epsilon", "sample", "v_prediction"])
        clipSample = try config.bool("clip_sample", false)
        clipSampleRange = Float(try config.double("clip_sample_range", 1))
        thresholding = try Thresholding(config: config)
        originalInferenceSteps = try config.int("original_inference_steps", 50)
        timestepScaling = try config.double("timestep_scaling", 10)
        finalAlphaCumprod = try config.bool("set_alpha_to_one", true) ? 1 : schedule.alphasCumprod[0]
    }

    public mutating func setBeginIndex(_ index: Int) { position.beginIndex = index }

    public mutating func setTimesteps(_ n: Int) throws { try setTimesteps(n, strength: 1) }

    /// `set_timesteps(n, strength=)`, as LCM's own image-to-image pipeline calls it: the steps are taken from
    /// the first `int(original_inference_steps x strength)` entries of the distillation schedule.
    public mutating func setTimesteps(_ n: Int, strength: Double) throws {
        position = ConsistencyPosition(timesteps: try consistencyTimesteps(n, train: schedule.numTrainTimesteps, original: originalInferenceSteps,
                                                                           strength: strength, scheduler: "LCM"))
        denoised = nil
    }

    public mutating func scaleModelInput(_ sample: Tensor, timestep: Double) throws -> Tensor { sample }

    /// `get_scalings_for_boundary_condition_discrete` (sigma_data 0.5), in double as diffusers computes them.
    func boundaryScalings(_ t: Int) -> (cSkip: Float, cOut: Float) {
        let s = Double(t) * timestepScaling
        return (Float(0.25 / (s * s + 0.25)), Float(s / (s * s + 0.25).squareRoot()))
    }

    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, generator: inout RandomGenerators?) throws -> Tensor {
        guard !timesteps.isEmpty else { throw SchedulerError.invalidUse("call setTimesteps before step") }
        let (index, next) = position.step(at: timestep)
        let ac = schedule.alphasCumprod
        let t = Int(timestep)
        guard t >= 0, t < ac.count else { throw SchedulerError.invalidUse("LCM: timestep \(t) out of range") }
        let prevT = next ?? t  // the last step's "previous" timestep is its own, as in diffusers
        let aT = ac[t]
        let aPrev = prevT >= 0 ? ac[prevT] : finalAlphaCumprod
        let sa = aT.squareRoot(), sb = (1 - aT).squareRoot()
        let (cSkip, cOut) = boundaryScalings(t)
        var x0: Tensor
        switch prediction {
        case "epsilon": x0 = try .schedZip(sample, modelOutput, "LCM step") { ($0 - sb * $1) / sa }
        case "sample": x0 = modelOutput
        default: x0 = try .schedZip(sample, modelOutput, "LCM step") { sa * $0 - sb * $1 }
        }
        if let thresholding {
            x0 = thresholding.apply(x0)
        } else if clipSample {
            let r = clipSampleRange
            x0 = x0.schedMap { min(max($0, -r), r) }
        }
        let out = try Tensor.schedZip(x0, sample, "LCM step") { cOut * $0 + cSkip * $1 }
        denoised = out
        guard index != timesteps.count - 1 else { return out }
        guard generator != nil else { throw SchedulerError.invalidUse("LCMScheduler draws noise between steps and needs a generator") }
        let noise = try generator!.randnLike(modelOutput)
        let pa = aPrev.squareRoot(), pb = (1 - aPrev).squareRoot()
        return try .schedZip(out, noise, "LCM step") { pa * $0 + pb * $1 }
    }

    public func addNoise(originalSamples: Tensor, noise: Tensor, timesteps: [Double]) throws -> Tensor {
        try addNoiseAlphas(schedule.alphasCumprod, originalSamples, noise, timesteps)
    }
}

/// The timesteps of the consistency schedulers (LCM, TCD): `n` entries, at floor(linspace(0, count, n,
/// endpoint=False)), of the distillation schedule k-1, 2k-1, ..., original*k-1 (k = train / original) reversed.
func consistencyTimesteps(_ n: Int, train: Int, original: Int, strength: Double = 1, scheduler: String) throws -> [Double] {
    try checkSteps(n, train)
    guard original >= 1, original <= train else {
        throw SchedulerError.invalidUse("original_inference_steps \(original) must be between 1 and num_train_timesteps \(train)")
    }
    let count = Int(Double(original) * strength)  // Python's int(): toward zero
    guard count >= n else {
        throw SchedulerError.invalidUse("\(scheduler): original_inference_steps x strength (\(original) x \(strength)) leaves \(count) timesteps for \(n) steps; use fewer steps or more strength")
    }
    guard n <= original else {
        throw SchedulerError.invalidUse("\(scheduler): num_inference_steps \(n) cannot be larger than original_inference_steps \(original)")
    }
    let k = train / original
    let origin: [Int] = (1...count).map { $0 * k - 1 }.reversed()
    let step = Double(origin.count) / Double(n)  // numpy's linspace: i * step, not i * count / n
    return (0..<n).map { i in Double(origin[Int((Double(i) * step).rounded(.down))]) }
}

/// Where a consistency scheduler (LCM, TCD) is in its timesteps: diffusers' `_init_step_index` (the begin index
/// when set, else the first match of the timestep, the second when it repeats) and `step_index += 1`.
struct ConsistencyPosition: Sendable {
    var timesteps: [Double] = []
    var beginIndex: Int?
    private var stepIndex: Int?

    init(timesteps: [Double] = []) { self.timesteps = timesteps }

    /// This step's index and the next timestep (nil after the last), advancing to the next step.
    mutating func step(at timestep: Double) -> (index: Int, next: Int?) {
        if stepIndex == nil {
            let matches = timesteps.indices.filter { timesteps[$0] == timestep }
            stepIndex = beginIndex ?? (matches.count > 1 ? matches[1] : matches.first ?? 0)
        }
        let index = stepIndex!
        stepIndex = index + 1
        return (index, index + 1 < timesteps.count ? Int(timesteps[index + 1]) : nil)
    }
}
