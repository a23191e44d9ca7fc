import Foundation

/// diffusers `LMSDiscreteScheduler`: linear multistep in sigma space, up to 4 past derivatives, with
/// coefficients that integrate the Lagrange basis polynomials over the current sigma interval.
public struct LMSDiscreteScheduler: Scheduler {
    public let config: SchedulerConfig
    public var kind: SchedulerKind { .lms }
    public var order: Int { 1 }
    public private(set) var timesteps: [Double] = []
    public private(set) var sigmas: [Float] = []
    public let schedule: NoiseSchedule
    /// The `order` argument of diffusers' `step` (how many past derivatives are combined).
    public var stepOrder = 4

    let prediction: String
    let spacing: TimestepSpacing
    let stepsOffset: Int
    let karras: Bool
    let exponential: Bool
    let sigmaMin: Double?
    let sigmaMax: Double?
    private var index = StepIndex()
    private var derivatives: [Tensor] = []

    public init(config: SchedulerConfig) throws {
        self.config = config
        schedule = try NoiseSchedule(config: config, supportsZeroSNR: false)
        prediction = try config.choice("prediction_type", "epsilon", ["epsilon", "v_prediction", "sample"])
        spacing = try TimestepSpacing.read(config, default: "linspace")
        stepsOffset = try config.int("steps_offset", 0)
        let sigmaOptions = try SigmaOptions(config)
        karras = sigmaOptions.karras
        exponential = sigmaOptions.exponential
        sigmaMin = sigmaOptions.sigmaMin
        sigmaMax = sigmaOptions.sigmaMax
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
        if karras {
            // LMS's Karras conversion ignores config sigma_min/sigma_max (unlike its exponential one).
            s = Sigmas.karras(min: s[s.count - 1], max: s[0], n)
            ts = s.map { Double(Float(Sigmas.sigmaToT($0, logSigmas))) }
        } else if exponential {
            s = Sigmas.exponential(min: sigmaMin ?? s[s.count - 1], max: sigmaMax ?? s[0], n)
            ts = s.map { Double(Float(Sigmas.sigmaToT($0, logSigmas))) }
        }
        sigmas = s.map { Float($0) } + [0]
        timesteps = ts
        derivatives = []
        index.reset()
    }

    public mutating func scaleModelInput(_ sample: Tensor, timestep: Double) throws -> Tensor {
        Sigmas.scaledInput(sample, sigma: sigmas[try index.current(for: timestep, in: timesteps)])
    }

    /// `get_lms_coefficient`: the integral over [sigma_t, sigma_{t+1}] of the Lagrange basis polynomial that
    /// is 1 at sigma_{t-j} and 0 at the other nodes. diffusers integrates it with scipy's adaptive quadrature;
    /// the polynomial has degree < 4, so 3-point Gauss-Legendre (exact to degree 5) gives the same value.
    func lmsCoefficient(order: Int, t: Int, j: Int) -> Double {
        let nodes = (0..<order).map { Double(sigmas[t - $0]) }
        func basis(_ tau: Double) -> Double {
            var prod = 1.0
            for k in 0..<order where k != j { prod *= (tau - nodes[k]) / (nodes[j] - nodes[k]) }
            return prod
        }
        let a = Double(sigmas[t]), b = Double(sigmas[t + 1])
        let mid = (a + b) / 2, half = (b - a) / 2
        let x = (3.0 / 5.0).squareRoot()
        return half * (5 * basis(mid - half * x) + 8 * basis(mid) + 5 * basis(mid + half * x)) / 9
    }

    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, generator: inout RandomGenerators?) throws -> Tensor {
        let i = try index.current(for: timestep, in: timesteps)
        guard i + 1 < sigmas.count else { throw SchedulerError.invalidUse("LMS: step past the last timestep") }
        guard stepOrder >= 1 else { throw SchedulerError.invalidUse("LMS: order must be at least 1") }
        let sigma = sigmas[i]
        let what = "LMS step"
        let x0: Tensor
        switch prediction {
        case "epsilon": x0 = try .schedZip(sample, modelOutput, what) { $0 - sigma * $1 }
        case "v_prediction":
            let c = -sigma / (sigma * sigma + 1).squareRoot(), d = sigma * sigma + 1
            x0 = try .schedZip(modelOutput, sample, what) { $0 * c + $1 / d }
        default: x0 = modelOutput
        }
        derivatives.append(try .schedZip(sample, x0, what) { ($0 - $1) / sigma })
        if derivatives.count > stepOrder { derivatives.removeFirst() }
        let order = min(i + 1, stepOrder)
        // sample + (c_0 * d_newest + c_1 * d_previous + ...), summed in that order as Python's sum does.
        var acc: Tensor?
        for (j, d) in derivatives.reversed().prefix(order).enumerated() {
            let c = Float(lmsCoefficient(order: order, t: i, j: j))
            let term = d.schedMap { c * $0 }
            acc = try acc.map { try .schedZip($0, term, what, +) } ?? term
        }
        index.step = i + 1
        guard let acc else { return sample }
        return try .schedZip(sample, acc, what, +)
    }

    public func addNoise(originalSamples: Tensor, noise: Tensor, timesteps ts: [Double]) throws -> Tensor {
        _ = try perItem(originalSamples, ts)
        let idx = try index.noiseIndices(ts, in: timesteps)
        return try Sigmas.addNoise(originalSamples, noise, sigmas: idx.map { sigmas[$0] })
    }
}
