/// diffusers `DDIMScheduler` (eta defaults to 0, as the Stable Diffusion pipelines pass it).
public struct DDIMScheduler: Scheduler {
    public let config: SchedulerConfig
    public var kind: SchedulerKind { .ddim }
    public var order: Int { 1 }
    public var initNoiseSigma: Float { 1 }
    public private(set) var timesteps: [Double] = []
    public let schedule: NoiseSchedule
    /// The `eta` argument of `step` (0 is deterministic DDIM; > 0 draws noise from the generator).
    public var eta: Float = 0

    let prediction: String
    let clipSample: Bool
    let clipSampleRange: Float
    let thresholding: Thresholding?
    let spacing: TimestepSpacing
    let stepsOffset: Int
    let finalAlphaCumprod: Float
    private var numInferenceSteps = 0

    public init(config: SchedulerConfig) throws {
        self.config = config
        schedule = try NoiseSchedule(config: config, supportsZeroSNR: true)
        prediction = try config.choice("prediction_type", "epsilon", ["epsilon", "sample", "v_prediction"])
        clipSample = try config.bool("clip_sample", true)
        clipSampleRange = Float(try config.double("clip_sample_range", 1))
        thresholding = try Thresholding(config: config)
        spacing = try TimestepSpacing.read(config, default: "leading")
        stepsOffset = try config.int("steps_offset", 0)
        finalAlphaCumprod = try config.bool("set_alpha_to_one", true) ? 1 : schedule.alphasCumprod[0]
    }

    public mutating func setBeginIndex(_ index: Int) {}

    public mutating func setEta(_ eta: Float) { self.eta = eta }

    public mutating func setTimesteps(_ n: Int) throws {
        try checkSteps(n, schedule.numTrainTimesteps)
        numInferenceSteps = n
        timesteps = spacedTimesteps(spacing, n, train: schedule.numTrainTimesteps, offset: stepsOffset).map(Double.init)
    }

    public mutating func scaleModelInput(_ sample: Tensor, timestep: Double) throws -> Tensor { sample }

    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, generator: inout RandomGenerators?) throws -> Tensor {
        guard numInferenceSteps > 0 else { throw SchedulerError.invalidUse("call setTimesteps before step") }
        let ac = schedule.alphasCumprod
        let t = Int(timestep)
        let prevT = t - schedule.numTrainTimesteps / numInferenceSteps
        guard t >= 0, t < ac.count else { throw SchedulerError.invalidUse("DDIM: timestep \(t) out of range") }
        let aT = ac[t]
        let aPrev = prevT >= 0 ? ac[prevT] : finalAlphaCumprod
        let bT = 1 - aT
        let sa = aT.squareRoot(), sb = bT.squareRoot()
        var x0: Tensor
        var eps: Tensor
        switch prediction {
        case "epsilon":
            x0 = try .schedZip(sample, modelOutput, "DDIM step") { ($0 - sb * $1) / sa }
            eps = modelOutput
        case "sample":
            x0 = modelOutput
            eps = try .schedZip(sample, x0, "DDIM step") { ($0 - sa * $1) / sb }
        default:
            x0 = try .schedZip(sample, modelOutput, "DDIM step") { sa * $0 - sb * $1 }
            eps = try .schedZip(modelOutput, sample, "DDIM step") { sa * $0 + sb * $1 }
        }
        if let thresholding {
            x0 = thresholding.apply(x0)
        } else if clipSample {
            let r = clipSampleRange
            x0 = x0.schedMap { min(max($0, -r), r) }
        }
        let bPrev = 1 - aPrev
        let variance = (bPrev / bT) * (1 - aT / aPrev)
        let std = eta * variance.squareRoot()
        let dirCoeff = (1 - aPrev - std * std).squareRoot()
        let sPrev = aPrev.squareRoot()
        var prev = try Tensor.schedZip(x0, eps, "DDIM step") { sPrev * $0 + dirCoeff * $1 }
        if eta > 0 {
            guard generator != nil else { throw SchedulerError.invalidUse("DDIM with eta > 0 needs a generator") }
            let noise = try generator!.randnLike(modelOutput)
            prev = try .schedZip(prev, noise, "DDIM step") { $0 + std * $1 }
        }
        return prev
    }

    public func addNoise(originalSamples: Tensor, noise: Tensor, timesteps: [Double]) throws -> Tensor {
        try addNoiseAlphas(schedule.alphasCumprod, originalSamples, noise, timesteps)
    }
}

/// Dynamic thresholding (`_threshold_sample`): per batch item, clamp to the `ratio` quantile of |x|
/// (at least 1, at most `sample_max_value`) and divide by it.
struct Thresholding: Sendable {
    let ratio: Float
    let maxValue: Float

    init?(config: SchedulerConfig) throws {
        guard try config.bool("thresholding", false) else { return nil }
        ratio = Float(try config.double("dynamic_thresholding_ratio", 0.995))
        maxValue = Float(try config.double("sample_max_value", 1))
    }

    func apply(_ x: Tensor) -> Tensor {
        let batch = max(x.shape.first ?? 1, 1)
        let size = x.count / batch
        var out = x
        out.withUnsafeMutableBufferPointer { o in
            for b in 0..<batch where size > 0 {
                let item = UnsafeMutableBufferPointer(rebasing: o[b * size..<(b + 1) * size])
                let sorted = item.map { Swift.abs($0) }.sorted()
                // torch.quantile, linear interpolation, float32.
                let rank = ratio * Float(size - 1)
                let lo = Int(rank.rounded(.down)), hi = min(lo + 1, size - 1)
                let w = rank - Float(lo)
                let a = sorted[lo], c = sorted[hi]
                var s = w < 0.5 ? a + w * (c - a) : c - (c - a) * (1 - w)
                s = min(max(s, 1), maxValue)
                for i in item.indices { item[i] = min(max(item[i], -s), s) / s }
            }
        }
        return out
    }
}
