import Foundation

/// diffusers `EulerAncestralDiscreteScheduler`: Euler step to sigma_down plus fresh noise of sigma_up.
public struct EulerAncestralDiscreteScheduler: Scheduler {
    public let config: SchedulerConfig
    public var kind: SchedulerKind { .eulerAncestral }
    public var order: Int { 1 }
    public private(set) var timesteps: [Double] = []
    public private(set) var sigmas: [Float] = []
    public let schedule: NoiseSchedule

    let vPrediction: Bool
    let spacing: TimestepSpacing
    let stepsOffset: Int
    private var index = StepIndex()

    public init(config: SchedulerConfig) throws {
        self.config = config
        schedule = try NoiseSchedule(config: config, supportsZeroSNR: true, zeroSNRLastAlpha: true)
        // diffusers raises NotImplementedError for "sample".
        vPrediction = try config.choice("prediction_type", "epsilon", ["epsilon", "v_prediction"]) == "v_prediction"
        spacing = try TimestepSpacing.read(config, default: "linspace")
        stepsOffset = try config.int("steps_offset", 0)
        sigmas = Sigmas.trainSigmas(schedule).reversed() + [0]
        timesteps = (0..<schedule.numTrainTimesteps).reversed().map(Double.init)
    }

    public var initNoiseSigma: Float { Sigmas.initNoiseSigma(sigmas, spacing) }

    public mutating func setBeginIndex(_ index: Int) { self.index.begin = index }

    public mutating func setTimesteps(_ n: Int) throws {
        try checkSteps(n, schedule.numTrainTimesteps)
        timesteps = Sigmas.floatTimesteps(spacing, n, train: schedule.numTrainTimesteps, offset: stepsOffset)
        let train = Sigmas.trainSigmas(schedule)
        sigmas = timesteps.map { Float(Sigmas.interp($0, train)) } + [0]
        index.reset()
    }

    public mutating func scaleModelInput(_ sample: Tensor, timestep: Double) throws -> Tensor {
        Sigmas.scaledInput(sample, sigma: sigmas[try index.current(for: timestep, in: timesteps)])
    }

    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, generator: inout RandomGenerators?) throws -> Tensor {
        guard generator != nil else { throw SchedulerError.invalidUse("Euler ancestral needs a generator for its noise") }
        let i = try index.current(for: timestep, in: timesteps)
        guard i + 1 < sigmas.count else { throw SchedulerError.invalidUse("Euler ancestral: step past the last timestep") }
        let sigma = sigmas[i]
        let x0: Tensor
        if vPrediction {
            let c = -sigma / (sigma * sigma + 1).squareRoot(), d = sigma * sigma + 1
            x0 = try .schedZip(modelOutput, sample, "Euler ancestral step") { $0 * c + $1 / d }
        } else {
            x0 = try .schedZip(sample, modelOutput, "Euler ancestral step") { $0 - sigma * $1 }
        }
        let from = sigmas[i], to = sigmas[i + 1]
        let up = (to * to * (from * from - to * to) / (from * from)).squareRoot()
        let down = (to * to - up * up).squareRoot()
        let dt = down - sigma
        let prev = try Tensor.schedZip(sample, x0, "Euler ancestral step") { s, p in s + ((s - p) / sigma) * dt }
        let noise = try generator!.randnLike(modelOutput)
        index.step = i + 1
        return try .schedZip(prev, noise, "Euler ancestral step") { $0 + $1 * up }
    }

    public func addNoise(originalSamples: Tensor, noise: Tensor, timesteps ts: [Double]) throws -> Tensor {
        _ = try perItem(originalSamples, ts)
        let idx = try index.noiseIndices(ts, in: timesteps)
        return try Sigmas.addNoise(originalSamples, noise, sigmas: idx.map { sigmas[$0] })
    }
}
