import Foundation

/// diffusers `DDPMScheduler`: ancestral sampling of the posterior q(x_{t-1} | x_t, x_0), drawing fresh
/// noise from the generator at every step with t > 0 (in diffusers' order: one draw per step, shaped
/// like the model's prediction).
public struct DDPMScheduler: Scheduler {
    public let config: SchedulerConfig
    public var kind: SchedulerKind { .ddpm }
    public var order: Int { 1 }
    public var initNoiseSigma: Float { 1 }
    public private(set) var timesteps: [Double] = []
    public let schedule: NoiseSchedule

    enum Variance: String { case fixedSmall = "fixed_small", fixedSmallLog = "fixed_small_log", fixedLarge = "fixed_large", learned, learnedRange = "learned_range" }

    let prediction: String
    let variance: Variance
    let clipSample: Bool
    let clipSampleRange: Float
    let thresholding: Thresholding?
    let spacing: TimestepSpacing
    let stepsOffset: Int
    private var numInferenceSteps = 0

    public init(config: SchedulerConfig) throws {
        self.config = config
        schedule = try NoiseSchedule(config: config, supportsZeroSNR: true, extraSchedules: ["sigmoid", "laplace"])
        prediction = try config.choice("prediction_type", "epsilon", ["epsilon", "sample", "v_prediction"])
        // With None, diffusers' _get_variance matches no branch and keeps the fixed_small variance.
        let v = try config.choice("variance_type", "fixed_small", ["fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned", "learned_range"],
                                  null: "fixed_small")
        // diffusers' step takes the square root of log(beta) < 0 for fixed_large_log: every noisy step is NaN.
        guard let variance = Variance(rawValue: v) else {
            throw SchedulerError.unsupported(file: config.source, key: "variance_type", value: "\"\(v)\" (diffusers' DDPM step yields NaN with it)")
        }
        self.variance = variance
        clipSample = try config.bool("clip_sample", true)
        clipSampleRange = Float(try config.double("clip_sample_range", 1))
        thresholding = try Thresholding(config: config)
        spacing = try TimestepSpacing.read(config, default: "leading")
        stepsOffset = try config.int("steps_offset", 0)
        timesteps = (0..<schedule.numTrainTimesteps).reversed().map(Double.init)
    }

    public mutating func setBeginIndex(_ index: Int) {}

    public mutating func setTimesteps(_ n: Int) throws {
        try checkSteps(n, schedule.numTrainTimesteps)
        numInferenceSteps = n
        timesteps = spacedTimesteps(spacing, n, train: schedule.numTrainTimesteps, offset: stepsOffset).map(Double.init)
    }

    public mutating func scaleModelInput(_ sample: Tensor, timestep: Double) throws -> Tensor { sample }

    /// `previous_timestep`: the next entry of the schedule, or -1 after the last one.
    private func previous(_ t: Int) throws -> Int {
        guard numInferenceSteps > 0 else { return t - 1 }
        guard let i = timesteps.firstIndex(of: Double(t)) else {
            throw SchedulerError.invalidUse("DDPM: timestep \(t) is not one of the scheduler's timesteps")
        }
        return i == timesteps.count - 1 ? -1 : Int(timesteps[i + 1])
    }

    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, generator: inout RandomGenerators?) throws -> Tensor {
        let ac = schedule.alphasCumprod
        let t = Int(timestep)
        guard t >= 0, t < ac.count else { throw SchedulerError.invalidUse("DDPM: timestep \(t) out of range") }
        let prevT = try previous(t)
        var output = modelOutput
        var predictedVariance: Tensor?
        if variance == .learned || variance == .learnedRange {
            // The model predicts [prediction, variance] stacked along channels (the last axis in NHWC).
            let c = sample.shape.last ?? 0
            guard output.shape.count == 4, output.shape.last == 2 * c else {
                throw SchedulerError.invalidUse("DDPM with variance_type \(variance.rawValue) needs a model output with \(2 * c) channels, got shape \(output.shape)")
            }
            let parts = splitChannels(output, c)
            output = parts.0
            predictedVariance = parts.1
        }
        let aT = ac[t]
        let aPrev: Float = prevT >= 0 ? ac[prevT] : 1
        let bT = 1 - aT, bPrev = 1 - aPrev
        let curAlpha = aT / aPrev
        let curBeta = 1 - curAlpha
        var x0: Tensor
        switch prediction {
        case "epsilon":
            let sb = bT.squareRoot(), sa = aT.squareRoot()
            x0 = try .schedZip(sample, output, "DDPM step") { ($0 - sb * $1) / sa }
        case "sample": x0 = output
        default:
            let sb = bT.squareRoot(), sa = aT.squareRoot()
            x0 = try .schedZip(sample, output, "DDPM step") { sa * $0 - sb * $1 }
        }
        if let thresholding {
            x0 = thresholding.apply(x0)
        } else if clipSample {
            let r = clipSampleRange
            x0 = x0.schedMap { min(max($0, -r), r) }
        }
        let x0Coeff = aPrev.squareRoot() * curBeta / bT
        let sampleCoeff = curAlpha.squareRoot() * bPrev / bT
        var prev = try Tensor.schedZip(x0, sample, "DDPM step") { x0Coeff * $0 + sampleCoeff * $1 }
        guard t > 0 else { return prev }

        guard var g = generator else { throw SchedulerError.invalidUse("DDPM needs a generator for its noise") }
        let noise = try g.randnLike(output)
        generator = g
        // `_get_variance`: the posterior variance, clamped away from zero.
        let posterior = max(bPrev / bT * curBeta, 1e-20)
        switch variance {
        case .fixedSmall:
            let std = posterior.squareRoot()
            prev = try .schedZip(prev, noise, "DDPM step") { $0 + std * $1 }
        case .fixedSmallLog:
            let std = Foundation.exp(0.5 * Foundation.log(posterior))
            prev = try .schedZip(prev, noise, "DDPM step") { $0 + std * $1 }
        case .fixedLarge:
            let std = curBeta.squareRoot()
            prev = try .schedZip(prev, noise, "DDPM step") { $0 + std * $1 }
        case .learned:
            guard let pv = predictedVariance else { return prev }
            prev = try .schedZip3(prev, pv, noise, "DDPM step") { $0 + $1.squareRoot() * $2 }
        case .learnedRange:
            guard let pv = predictedVariance else { return prev }
            let minLog = Foundation.log(posterior), maxLog = Foundation.log(curBeta)
            prev = try .schedZip3(prev, pv, noise, "DDPM step") { p, v, n in
                let frac = (v + 1) / 2
                return p + Foundation.exp(0.5 * (frac * maxLog + (1 - frac) * minLog)) * n
            }
        }
        return prev
    }

    public func addNoise(originalSamples: Tensor, noise: Tensor, timesteps: [Double]) throws -> Tensor {
        try addNoiseAlphas(schedule.alphasCumprod, originalSamples, noise, timesteps)
    }
}

/// Splits an NHWC tensor's channels into the first `count` and the rest (`torch.split(x, count, dim=1)`).
func splitChannels(_ x: Tensor, _ count: Int) -> (Tensor, Tensor) {
    let c = x.shape.last ?? 0
    let rest = c - count
    let pixels = c == 0 ? 0 : x.count / c
    let head = Array(x.shape.dropLast())
    var a = Tensor(uninitializedShape: head + [count]), b = Tensor(uninitializedShape: head + [rest])
    x.withUnsafeBufferPointer { src in
        a.withUnsafeMutableBufferPointer { pa in
            b.withUnsafeMutableBufferPointer { pb in
                for p in 0..<pixels {
                    for k in 0..<count { pa[p * count + k] = src[p * c + k] }
                    for k in 0..<rest { pb[p * rest + k] = src[p * c + count + k] }
                }
            }
        }
    }
    return (a, b)
}
