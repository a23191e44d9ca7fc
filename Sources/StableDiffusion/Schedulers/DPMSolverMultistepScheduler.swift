import Foundation

/// diffusers `DPMSolverMultistepScheduler` (DPM-Solver and DPM-Solver++, orders 1 to 3, and their SDE
/// variants). `dpm++2m` in the CLI is this with `algorithm_type` dpmsolver++ and `solver_order` 2.
///
/// Coefficients are computed in float32 scalars, as diffusers does with 0-dim torch tensors, and applied
/// element-wise in the same order of operations.
public struct DPMSolverMultistepScheduler: Scheduler {
    public let config: SchedulerConfig
    public var kind: SchedulerKind { .dpmSolverMultistep }
    public var order: Int { 1 }
    public var initNoiseSigma: Float { 1 }
    public private(set) var timesteps: [Double] = []
    public private(set) var sigmas: [Float] = []
    public let schedule: NoiseSchedule

    enum Algorithm: String { case dpmsolver, dpmsolverPP = "dpmsolver++", sde = "sde-dpmsolver", sdePP = "sde-dpmsolver++" }

    let solverOrder: Int
    let prediction: String
    let thresholding: Thresholding?
    let algorithm: Algorithm
    let heun: Bool
    let lowerOrderFinal: Bool
    let eulerAtFinal: Bool
    let karras: Bool
    let exponential: Bool
    let luLambdas: Bool
    let sigmaMin: Double?
    let sigmaMax: Double?
    let finalSigmaMin: Bool
    let lambdaMinClipped: Double
    /// `variance_type` learned / learned_range: the model output carries a variance half; only its first
    /// 3 channels (diffusers' fixed `[:, :3]`) are the prediction.
    let learnedVariance: Bool
    let spacing: TimestepSpacing
    let stepsOffset: Int
    let cosine: Bool

    private var modelOutputs: [Tensor?] = []
    private var lowerOrderNums = 0
    private var index = StepIndex()
    private var prepared = false

    public init(config: SchedulerConfig) throws {
        self.config = config
        schedule = try NoiseSchedule(config: config, supportsZeroSNR: true, zeroSNRLastAlpha: true)
        solverOrder = try config.int("solver_order", 2)
        guard (1...3).contains(solverOrder) else {
            throw SchedulerError.unsupported(file: config.source, key: "solver_order", value: String(solverOrder))
        }
        prediction = try config.choice("prediction_type", "epsilon", ["epsilon", "sample", "v_prediction"])
        thresholding = try Thresholding(config: config)
        let algorithmName = try config.choice("algorithm_type", "dpmsolver++", ["dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++", "deis"])
        // diffusers runs "deis" as dpmsolver++ (but still checks final_sigmas_type against the name "deis").
        algorithm = Algorithm(rawValue: algorithmName) ?? .dpmsolverPP
        // diffusers maps the UniPC/DEIS solver types onto midpoint.
        heun = try config.choice("solver_type", "midpoint", ["midpoint", "heun", "logrho", "bh1", "bh2"]) == "heun"
        lowerOrderFinal = try config.bool("lower_order_final", true)
        eulerAtFinal = try config.bool("euler_at_final", false)
        let sigmaOptions = try SigmaOptions(config)
        karras = sigmaOptions.karras
        exponential = sigmaOptions.exponential
        sigmaMin = sigmaOptions.sigmaMin
        sigmaMax = sigmaOptions.sigmaMax
        luLambdas = try config.bool("use_lu_lambdas", false)
        try config.requireOff("use_flow_sigmas")
        try config.requireOff("use_dynamic_shifting")
        finalSigmaMin = try config.choice("final_sigmas_type", "zero", ["zero", "sigma_min"]) == "sigma_min"
        if !finalSigmaMin && algorithm != .dpmsolverPP && algorithm != .sdePP || !finalSigmaMin && algorithmName == "deis" {
            throw SchedulerError.invalidValue(file: config.source, key: "final_sigmas_type", detail: "\"zero\" is not supported with algorithm_type \"\(algorithmName)\"; use \"sigma_min\"")
        }
        lambdaMinClipped = try config.double("lambda_min_clipped", -.infinity)
        // diffusers only asks whether variance_type is "learned"/"learned_range" (the model then also predicts
        // variances, dropped here); any other value, such as a DDPM config's "fixed_small", changes nothing.
        if let v = config.raw("variance_type") {
            guard let s = v.stringValue else {
                throw SchedulerError.invalidValue(file: config.source, key: "variance_type", detail: "expected a string, got \(v.description)")
            }
            learnedVariance = s == "learned" || s == "learned_range"
        } else {
            learnedVariance = false
        }
        spacing = try TimestepSpacing.read(config, default: "linspace")
        stepsOffset = try config.int("steps_offset", 0)
        // diffusers tests the config's beta_schedule even when trained_betas override it.
        cosine = config.raw("beta_schedule")?.stringValue == "squaredcos_cap_v2"
        sigmas = Sigmas.trainSigmas(schedule)
        timesteps = (0..<schedule.numTrainTimesteps).reversed().map(Double.init)
    }

    public mutating func setBeginIndex(_ index: Int) { self.index.begin = index }

    public mutating func setTimesteps(_ n: Int) throws {
        try checkSteps(n, schedule.numTrainTimesteps)
        let train = schedule.numTrainTimesteps
        let last = train - lambdaClippedIndex()
        var ts = Sigmas.multistepTimesteps(spacing, n, last: last, train: train, offset: stepsOffset)
        let trainSigmas = Sigmas.trainSigmas(schedule)
        let logSigmas = trainSigmas.map { Foundation.log($0) }
        var s: [Double]
        if karras || exponential || luLambdas {
            let lo = sigmaMin ?? Double(trainSigmas[0]), hi = sigmaMax ?? Double(trainSigmas[trainSigmas.count - 1])
            if karras {
                s = Sigmas.karras(min: lo, max: hi, n)
            } else if exponential {
                s = Sigmas.exponential(min: lo, max: hi, n)
            } else {
                // Uniform in log-SNR between the flipped log-sigmas' ends (rho = 1).
                let lmax = Double(logSigmas[logSigmas.count - 1]), lmin = Double(logSigmas[0])
                s = npLinspace(0, 1, n).map { Foundation.exp(lmax + $0 * (lmin - lmax)) }
            }
            ts = s.map { Sigmas.sigmaToT($0, logSigmas) }
            // Rounded except for the cosine schedule (and exponential sigmas); int64 conversion truncates.
            ts = ts.map { (exponential || cosine) ? $0.rounded(.towardZero) : roundEven($0) }
        } else {
            s = ts.map { Sigmas.interp($0, trainSigmas) }
        }
        let lastSigma: Float = finalSigmaMin ? ((1 - schedule.alphasCumprod[0]) / schedule.alphasCumprod[0]).squareRoot() : 0
        sigmas = s.map { Float($0) } + [lastSigma]
        timesteps = ts
        modelOutputs = Array(repeating: nil, count: solverOrder)
        lowerOrderNums = 0
        index.reset()
        prepared = true
    }

    /// `searchsorted(flip(lambda_t), lambda_min_clipped)`: how many of the smallest log-SNRs are cut off.
    private func lambdaClippedIndex() -> Int {
        guard lambdaMinClipped > -.infinity else { return 0 }
        let lambdas = schedule.alphasCumprod.map { a -> Float in
            Foundation.log(a.squareRoot()) - Foundation.log((1 - a).squareRoot())
        }
        return lambdas.reversed().filter { Double($0) < lambdaMinClipped }.count
    }

    public mutating func scaleModelInput(_ sample: Tensor, timestep: Double) throws -> Tensor { sample }

    /// `_sigma_to_alpha_sigma_t` in float32.
    static func alphaSigma(_ sigma: Float) -> (alpha: Float, sigma: Float) {
        let alpha = 1 / (sigma * sigma + 1).squareRoot()
        return (alpha, sigma * alpha)
    }

    static func lambda(_ a: (alpha: Float, sigma: Float)) -> Float { Foundation.log(a.alpha) - Foundation.log(a.sigma) }

    private func convert(_ output: Tensor, sample: Tensor, step i: Int) throws -> Tensor {
        var output = output
        if learnedVariance && prediction == "epsilon" { output = try firstChannels(output, 3) }
        let (alpha, sigma) = Self.alphaSigma(sigmas[i])
        if algorithm == .dpmsolverPP || algorithm == .sdePP {
            var x0: Tensor
            switch prediction {
            case "epsilon": x0 = try .schedZip(sample, output, "DPM-Solver") { ($0 - sigma * $1) / alpha }
            case "sample": x0 = output
            default: x0 = try .schedZip(sample, output, "DPM-Solver") { alpha * $0 - sigma * $1 }
            }
            if let thresholding { x0 = thresholding.apply(x0) }
            return x0
        }
        var eps: Tensor
        switch prediction {
        case "epsilon": eps = output
        case "sample": eps = try .schedZip(sample, output, "DPM-Solver") { ($0 - alpha * $1) / sigma }
        default: eps = try .schedZip(output, sample, "DPM-Solver") { alpha * $0 + sigma * $1 }
        }
        if let thresholding {
            var x0 = try Tensor.schedZip(sample, eps, "DPM-Solver") { ($0 - sigma * $1) / alpha }
            x0 = thresholding.apply(x0)
            eps = try .schedZip(sample, x0, "DPM-Solver") { ($0 - alpha * $1) / sigma }
        }
        return eps
    }

    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, generator: inout RandomGenerators?) throws -> Tensor {
        guard prepared else { throw SchedulerError.invalidUse("call setTimesteps before step") }
        let i: Int
        if let s = index.step { i = s } else {
            // diffusers falls back to the last index for a timestep not in the schedule.
            i = index.begin ?? ((try? Sigmas.index(of: timestep, in: timesteps)) ?? timesteps.count - 1)
        }
        guard i + 1 < sigmas.count else { throw SchedulerError.invalidUse("DPM-Solver: step past the last timestep") }
        let n = timesteps.count
        let lowerFinal = i == n - 1 && (eulerAtFinal || (lowerOrderFinal && n < 15) || !finalSigmaMin)
        let lowerSecond = i == n - 2 && lowerOrderFinal && n < 15
        let converted = try convert(modelOutput, sample: sample, step: i)
        for k in 0..<(solverOrder - 1) { modelOutputs[k] = modelOutputs[k + 1] }
        modelOutputs[solverOrder - 1] = converted

        var noise: Tensor?
        if algorithm == .sde || algorithm == .sdePP {
            guard var g = generator else { throw SchedulerError.invalidUse("DPM-Solver SDE needs a generator for its noise") }
            noise = try g.randnLike(converted)
            generator = g
        }
        let prev: Tensor
        if solverOrder == 1 || lowerOrderNums < 1 || lowerFinal {
            prev = try firstOrder(converted, sample: sample, noise: noise, step: i)
        } else if solverOrder == 2 || lowerOrderNums < 2 || lowerSecond {
            prev = try secondOrder(sample: sample, noise: noise, step: i)
        } else {
            prev = try thirdOrder(sample: sample, noise: noise, step: i)
        }
        if lowerOrderNums < solverOrder { lowerOrderNums += 1 }
        index.step = i + 1
        return prev
    }

    private func history(_ back: Int) throws -> Tensor {
        guard let t = modelOutputs[solverOrder - 1 - back] else { throw SchedulerError.invalidUse("DPM-Solver: missing model output history") }
        return t
    }

    private func firstOrder(_ m: Tensor, sample: Tensor, noise: Tensor?, step i: Int) throws -> Tensor {
        let t = Self.alphaSigma(sigmas[i + 1]), s = Self.alphaSigma(sigmas[i])
        let h = Self.lambda(t) - Self.lambda(s)
        let what = "DPM-Solver step"
        switch algorithm {
        case .dpmsolverPP:
            let c1 = t.sigma / s.sigma, c2 = t.alpha * (Foundation.exp(-h) - 1)
            return try .schedZip(sample, m, what) { c1 * $0 - c2 * $1 }
        case .dpmsolver:
            let c1 = t.alpha / s.alpha, c2 = t.sigma * (Foundation.exp(h) - 1)
            return try .schedZip(sample, m, what) { c1 * $0 - c2 * $1 }
        case .sdePP:
            let e2 = Foundation.exp(-2 * h)
            let c1 = t.sigma / s.sigma * Foundation.exp(-h), c2 = t.alpha * (1 - e2), c3 = t.sigma * (1 - e2).squareRoot()
            return try .schedZip3(sample, m, try need(noise), what) { c1 * $0 + c2 * $1 + c3 * $2 }
        case .sde:
            let c1 = t.alpha / s.alpha, c2 = 2 * (t.sigma * (Foundation.exp(h) - 1)), c3 = t.sigma * (Foundation.exp(2 * h) - 1).squareRoot()
            return try .schedZip3(sample, m, try need(noise), what) { c1 * $0 - c2 * $1 + c3 * $2 }
        }
    }

    private func need(_ noise: Tensor?) throws -> Tensor {
        guard let noise else { throw SchedulerError.invalidUse("DPM-Solver SDE: missing noise") }
        return noise
    }

    private func secondOrder(sample: Tensor, noise: Tensor?, step i: Int) throws -> Tensor {
        let t = Self.alphaSigma(sigmas[i + 1]), s0 = Self.alphaSigma(sigmas[i]), s1 = Self.alphaSigma(sigmas[i - 1])
        let lt = Self.lambda(t), l0 = Self.lambda(s0), l1 = Self.lambda(s1)
        let m0 = try history(0), m1 = try history(1)
        let h = lt - l0, h0 = l0 - l1
        let r0 = h0 / h
        let inv = 1 / r0
        let d1 = try Tensor.schedZip(m0, m1, "DPM-Solver step") { inv * ($0 - $1) }
        let what = "DPM-Solver step"
        let c0: Float, c1: Float, c2: Float  // x_t = c0 * sample + c1 * D0 + c2 * D1 (+ noise)
        var cn: Float = 0
        switch algorithm {
        case .dpmsolverPP:
            let a = t.alpha * (Foundation.exp(-h) - 1)
            c0 = t.sigma / s0.sigma; c1 = -a
            c2 = heun ? t.alpha * ((Foundation.exp(-h) - 1) / h + 1) : -(0.5 * a)
        case .dpmsolver:
            let a = t.sigma * (Foundation.exp(h) - 1)
            c0 = t.alpha / s0.alpha; c1 = -a
            c2 = heun ? -(t.sigma * ((Foundation.exp(h) - 1) / h - 1)) : -(0.5 * a)
        case .sdePP:
            let e2 = Foundation.exp(-2 * h)
            let a = t.alpha * (1 - e2)
            c0 = t.sigma / s0.sigma * Foundation.exp(-h); c1 = a
            c2 = heun ? t.alpha * ((1 - e2) / (-2 * h) + 1) : 0.5 * a
            cn = t.sigma * (1 - e2).squareRoot()
        case .sde:
            let a = t.sigma * (Foundation.exp(h) - 1)
            c0 = t.alpha / s0.alpha; c1 = -(2 * a)
            c2 = heun ? -(2 * (t.sigma * ((Foundation.exp(h) - 1) / h - 1))) : -a
            cn = t.sigma * (Foundation.exp(2 * h) - 1).squareRoot()
        }
        var x = try Tensor.schedZip3(sample, m0, d1, what) { c0 * $0 + c1 * $1 + c2 * $2 }
        if let noise { x = try .schedZip(x, noise, what) { $0 + cn * $1 } }
        return x
    }

    private func thirdOrder(sample: Tensor, noise: Tensor?, step i: Int) throws -> Tensor {
        let t = Self.alphaSigma(sigmas[i + 1]), s0 = Self.alphaSigma(sigmas[i])
        let s1 = Self.alphaSigma(sigmas[i - 1]), s2 = Self.alphaSigma(sigmas[i - 2])
        let lt = Self.lambda(t), l0 = Self.lambda(s0), l1 = Self.lambda(s1), l2 = Self.lambda(s2)
        let m0 = try history(0), m1 = try history(1), m2 = try history(2)
        let h = lt - l0, h0 = l0 - l1, h1 = l1 - l2
        let r0 = h0 / h, r1 = h1 / h
        let i0 = 1 / r0, i1 = 1 / r1
        let what = "DPM-Solver step"
        let d10 = try Tensor.schedZip(m0, m1, what) { i0 * ($0 - $1) }
        let d11 = try Tensor.schedZip(m1, m2, what) { i1 * ($0 - $1) }
        let w = r0 / (r0 + r1), v = 1 / (r0 + r1)
        let d1 = try Tensor.schedZip(d10, d11, what) { $0 + w * ($0 - $1) }
        let d2 = try Tensor.schedZip(d10, d11, what) { v * ($0 - $1) }
        let c0: Float, c1: Float, c2: Float, c3: Float  // x_t = c0 * sample + c1 * D0 + c2 * D1 + c3 * D2 (+ noise)
        var cn: Float = 0
        switch algorithm {
        case .dpmsolverPP:
            let e = Foundation.exp(-h)
            c0 = t.sigma / s0.sigma; c1 = -(t.alpha * (e - 1))
            c2 = t.alpha * ((e - 1) / h + 1); c3 = -(t.alpha * ((e - 1 + h) / (h * h) - 0.5))
        case .dpmsolver:
            let e = Foundation.exp(h)
            c0 = t.alpha / s0.alpha; c1 = -(t.sigma * (e - 1))
            c2 = -(t.sigma * ((e - 1) / h - 1)); c3 = -(t.sigma * ((e - 1 - h) / (h * h) - 0.5))
        case .sdePP:
            let e2 = Foundation.exp(-2 * h)
            c0 = t.sigma / s0.sigma * Foundation.exp(-h); c1 = t.alpha * (1 - e2)
            c2 = t.alpha * ((1 - e2) / (-2 * h) + 1); c3 = t.alpha * ((1 - e2 - 2 * h) / ((2 * h) * (2 * h)) - 0.5)
            cn = t.sigma * (1 - e2).squareRoot()
        case .sde:
            // diffusers has no third-order update for sde-dpmsolver (it fails there).
            throw SchedulerError.unsupported(file: config.source, key: "algorithm_type", value: "\"sde-dpmsolver\" with solver_order 3")
        }
        var x = try Tensor.schedZip3(sample, m0, d1, what) { c0 * $0 + c1 * $1 + c2 * $2 }
        x = try .schedZip(x, d2, what) { $0 + c3 * $1 }
        if let noise { x = try .schedZip(x, noise, what) { $0 + cn * $1 } }
        return x
    }

    public func addNoise(originalSamples: Tensor, noise: Tensor, timesteps ts: [Double]) throws -> Tensor {
        _ = try perItem(originalSamples, ts)
        let idx: [Int]
        if index.begin == nil {
            idx = ts.map { (try? Sigmas.index(of: $0, in: timesteps)) ?? timesteps.count - 1 }
        } else {
            idx = Array(repeating: index.step ?? index.begin ?? 0, count: ts.count)
        }
        return try addNoiseAlphaSigma(originalSamples, noise, sigmas: idx.map { sigmas[$0] })
    }
}

/// `alpha_t * x + sigma_t * noise` per batch item, with alpha and sigma from the Karras sigma
/// (the multistep solvers' add_noise).
func addNoiseAlphaSigma(_ x: Tensor, _ noise: Tensor, sigmas: [Float]) throws -> Tensor {
    guard x.shape == noise.shape else { throw TensorError.shapeMismatch("add_noise: sample \(x.shape) and noise \(noise.shape) differ") }
    let batch = max(x.shape.first ?? 1, 1)
    let size = x.count / batch
    var out = Tensor(uninitializedShape: x.shape)
    x.withUnsafeBufferPointer { a in
        noise.withUnsafeBufferPointer { n in
            out.withUnsafeMutableBufferPointer { o in
                for b in 0..<batch {
                    let (alpha, sigma) = DPMSolverMultistepScheduler.alphaSigma(sigmas[sigmas.count == 1 ? 0 : b])
                    for i in b * size..<(b + 1) * size { o[i] = alpha * a[i] + sigma * n[i] }
                }
            }
        }
    }
    return out
}

/// The first `count` channels of an NHWC tensor (diffusers' `model_output[:, :count]` for models that
/// also predict a variance).
func firstChannels(_ x: Tensor, _ count: Int) throws -> Tensor {
    guard x.shape.count == 4, let c = x.shape.last, c >= count else {
        throw TensorError.shapeMismatch("expected an NHWC tensor with at least \(count) channels, got \(x.shape)")
    }
    if c == count { return x }
    let pixels = x.count / c
    var out = Tensor(uninitializedShape: Array(x.shape.dropLast()) + [count])
    x.withUnsafeBufferPointer { a in
        out.withUnsafeMutableBufferPointer { o in
            for p in 0..<pixels { for k in 0..<count { o[p * count + k] = a[p * c + k] } }
        }
    }
    return out
}
