import Foundation

/// diffusers `EulerDiscreteScheduler` (s_churn = 0, as the pipelines call it).
public struct EulerDiscreteScheduler: Scheduler {
    public let config: SchedulerConfig
    public var kind: SchedulerKind { .euler }
    public var order: Int { 1 }
    public private(set) var timesteps: [Double] = []
    public private(set) var sigmas: [Float] = []
    public let schedule: NoiseSchedule

    let prediction: String
    let spacing: TimestepSpacing
    let stepsOffset: Int
    let logLinear: Bool
    let karras: Bool
    let exponential: Bool
    let sigmaMin: Double?
    let sigmaMax: Double?
    let continuous: Bool
    let finalSigmaMin: Bool
    private var index = StepIndex()

    public init(config: SchedulerConfig) throws {
        self.config = config
        schedule = try NoiseSchedule(config: config, supportsZeroSNR: true, zeroSNRLastAlpha: true)
        prediction = try config.choice("prediction_type", "epsilon", ["epsilon", "v_prediction", "sample", "original_sample"])
        spacing = try TimestepSpacing.read(config, default: "linspace")
        stepsOffset = try config.int("steps_offset", 0)
        logLinear = try config.choice("interpolation_type", "linear", ["linear", "log_linear"]) == "log_linear"
        let sigmaOptions = try SigmaOptions(config)
        karras = sigmaOptions.karras
        exponential = sigmaOptions.exponential
        sigmaMin = sigmaOptions.sigmaMin
        sigmaMax = sigmaOptions.sigmaMax
        continuous = try config.choice("timestep_type", "discrete", ["discrete", "continuous"], null: "discrete") == "continuous" && prediction == "v_prediction"
        finalSigmaMin = try config.choice("final_sigmas_type", "zero", ["zero", "sigma_min"]) == "sigma_min"
        let train = Sigmas.trainSigmas(schedule)
        sigmas = train.reversed() + [0]
        timesteps = (0..<schedule.numTrainTimesteps).reversed().map(Double.init)
    }

    public var initNoiseSigma: Float { Sigmas.initNoiseSigma(sigmas, spacing) }

    public mutating func setBeginIndex(_ index: Int) { self.index.begin = index }

    public mutating func setTimesteps(_ n: Int) throws {
        try checkSteps(n, schedule.numTrainTimesteps)
        var ts = Sigmas.floatTimesteps(spacing, n, train: schedule.numTrainTimesteps, offset: stepsOffset)
        let train = Sigmas.trainSigmas(schedule)
        let logSigmas = train.map { Foundation.log($0) }
        var s: [Double]
        if logLinear {
            s = NoiseSchedule.linspace(logSigmas[logSigmas.count - 1], logSigmas[0], n + 1).map { Double(Foundation.exp($0)) }
        } else {
            s = ts.map { Sigmas.interp($0, train) }
        }
        if karras || exponential {
            let lo = sigmaMin ?? s[s.count - 1], hi = sigmaMax ?? s[0]
            s = karras ? Sigmas.karras(min: lo, max: hi, n) : Sigmas.exponential(min: lo, max: hi, n)
            ts = s.map { Sigmas.sigmaToT($0, logSigmas) }
        }
        let last: Float = finalSigmaMin ? ((1 - schedule.alphasCumprod[0]) / schedule.alphasCumprod[0]).squareRoot() : 0
        sigmas = s.map { Float($0) } + [last]
        if continuous {
            timesteps = sigmas.dropLast().map { Double(0.25 * Foundation.log($0)) }
        } else {
            timesteps = ts.map { Double(Float($0)) }
        }
        index.reset()
    }

    public mutating func scaleModelInput(_ sample: Tensor, timestep: Double) throws -> Tensor {
        Sigmas.scaledInput(sample, sigma: sigmas[try index.current(for: timestep, in: timesteps)])
    }

    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, generator: inout RandomGenerators?) throws -> Tensor {
        let i = try index.current(for: timestep, in: timesteps)
        guard i + 1 < sigmas.count else { throw SchedulerError.invalidUse("Euler: step past the last timestep") }
        let sigma = sigmas[i]
        let x0: Tensor
        switch prediction {
        case "epsilon": x0 = try .schedZip(sample, modelOutput, "Euler step") { $0 - sigma * $1 }
        case "v_prediction":
            let c = -sigma / (sigma * sigma + 1).squareRoot(), d = sigma * sigma + 1
            x0 = try .schedZip(modelOutput, sample, "Euler step") { $0 * c + $1 / d }
        default: x0 = modelOutput
        }
        let dt = sigmas[i + 1] - sigma
        let prev = try Tensor.schedZip(sample, x0, "Euler step") { s, p in s + ((s - p) / sigma) * dt }
        index.step = i + 1
        return prev
    }

    public func addNoise(originalSamples: Tensor, noise: Tensor, timesteps ts: [Double]) throws -> Tensor {
        _ = try perItem(originalSamples, ts)
        let idx = try index.noiseIndices(ts, in: timesteps)
        return try Sigmas.addNoise(originalSamples, noise, sigmas: idx.map { sigmas[$0] })
    }
}
