import Foundation

/// diffusers `HeunDiscreteScheduler`: Heun's second-order method in sigma space. Each inference step
/// takes two model evaluations, so `timesteps` repeats every entry after the first (`order` is 2): the
/// first call of a pair is an Euler step, the second corrects it with the averaged derivative.
public struct HeunDiscreteScheduler: Scheduler {
    public let config: SchedulerConfig
    public var kind: SchedulerKind { .heun }
    public var order: Int { 2 }
    public private(set) var timesteps: [Double] = []
    public private(set) var sigmas: [Float] = []
    public let schedule: NoiseSchedule

    let prediction: String
    let spacing: TimestepSpacing
    let stepsOffset: Int
    let karras: Bool
    let exponential: Bool
    let sigmaMin: Double?
    let sigmaMax: Double?
    let clipSample: Bool
    let clipSampleRange: Float
    private var index = StepIndex()
    /// The first-order half's derivative, step and sample, kept for the correction (`state_in_first_order` when nil).
    private var pending: (derivative: Tensor, dt: Float, sample: Tensor)?

    public init(config: SchedulerConfig) throws {
        self.config = config
        schedule = try NoiseSchedule(config: config, supportsZeroSNR: false, extraSchedules: ["exp"], betaRange: (0.00085, 0.012))
        prediction = try config.choice("prediction_type", "epsilon", ["epsilon", "v_prediction", "sample"])
        spacing = try TimestepSpacing.read(config, default: "linspace")
        stepsOffset = try config.int("steps_offset", 0)
        let sigmaOptions = try SigmaOptions(config)
        karras = sigmaOptions.karras
        exponential = sigmaOptions.exponential
        sigmaMin = sigmaOptions.sigmaMin
        sigmaMax = sigmaOptions.sigmaMax
        clipSample = try config.bool("clip_sample", false)
        clipSampleRange = Float(try config.double("clip_sample_range", 1))
        // diffusers' __init__ sets the full training schedule.
        try setTimesteps(schedule.numTrainTimesteps)
    }

    public var initNoiseSigma: Float { Sigmas.initNoiseSigma(sigmas, spacing) }

    public mutating func setBeginIndex(_ index: Int) { self.index.begin = index }

    public mutating func setTimesteps(_ n: Int) throws {
        try checkSteps(n, schedule.numTrainTimesteps)
        var ts = Sigmas.floatTimesteps(spacing, n, train: schedule.numTrainTimesteps, offset: stepsOffset)
        let train = Sigmas.trainSigmas(schedule)
        let logSigmas = train.map { Foundation.log($0) }
        var s = ts.map { Sigmas.interp($0, train) }
        if karras || exponential {
            let lo = sigmaMin ?? s[s.count - 1], hi = sigmaMax ?? s[0]
            s = karras ? Sigmas.karras(min: lo, max: hi, n) : Sigmas.exponential(min: lo, max: hi, n)
            ts = s.map { Double(Float(Sigmas.sigmaToT($0, logSigmas))) }
        }
        let base = s.map { Float($0) } + [0]
        // Every sigma but the first and the final zero, and every timestep but the first, is doubled.
        sigmas = [base[0]] + base.dropFirst().dropLast().flatMap { [$0, $0] } + [0]
        timesteps = [ts[0]] + ts.dropFirst().flatMap { [$0, $0] }
        pending = nil
        index.reset()
    }

    public mutating func scaleModelInput(_ sample: Tensor, timestep: Double) throws -> Tensor {
        Sigmas.scaledInput(sample, sigma: sigmas[try index.current(for: timestep, in: timesteps)])
    }

    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, generator: inout RandomGenerators?) throws -> Tensor {
        let i = try index.current(for: timestep, in: timesteps)
        guard i + 1 < sigmas.count, pending == nil || i >= 1 else { throw SchedulerError.invalidUse("Heun: step past the last timestep") }
        let first = pending == nil
        let sigma = first ? sigmas[i] : sigmas[i - 1]
        let next = first ? sigmas[i + 1] : sigmas[i]
        let what = "Heun step"
        let input = first ? sigma : next
        var x0: Tensor
        switch prediction {
        case "epsilon": x0 = try .schedZip(sample, modelOutput, what) { $0 - input * $1 }
        case "v_prediction":
            let c = -input / (input * input + 1).squareRoot(), d = input * input + 1
            x0 = try .schedZip(modelOutput, sample, what) { $0 * c + $1 / d }
        default: x0 = modelOutput
        }
        if clipSample {
            let r = clipSampleRange
            x0 = x0.schedMap { min(max($0, -r), r) }
        }
        let prev: Tensor
        if let p = pending {
            let derivative = try Tensor.schedZip3(sample, x0, p.derivative, what) { s, x, d in (d + (s - x) / next) / 2 }
            let dt = p.dt
            prev = try .schedZip(p.sample, derivative, what) { $0 + $1 * dt }
            pending = nil
        } else {
            let derivative = try Tensor.schedZip(sample, x0, what) { ($0 - $1) / sigma }
            let dt = next - sigma
            pending = (derivative, dt, sample)
            prev = try .schedZip(sample, derivative, what) { $0 + $1 * dt }
        }
        index.step = i + 1
        return prev
    }

    public func addNoise(originalSamples: Tensor, noise: Tensor, timesteps ts: [Double]) throws -> Tensor {
        _ = try perItem(originalSamples, ts)
        let idx = try index.noiseIndices(ts, in: timesteps)
        return try Sigmas.addNoise(originalSamples, noise, sigmas: idx.map { sigmas[$0] })
    }
}
