import Foundation

/// diffusers `UniPCMultistepScheduler`: a multistep predictor (UniP) followed, at the next call, by a
/// corrector (UniC) that reuses the new model output, with the B(h) of variant bh1 or bh2.
///
/// Scalars are float32 as diffusers' 0-dim tensors are; the small linear systems for the rho coefficients
/// are solved in float64 (torch solves them in float32; the difference is far below the 1e-5 goal).
/// Like diffusers, `predict_x0` false or `solver_type` bh1 with a final sigma of zero give NaN at the
/// last step (h is infinite there); use `final_sigmas_type` sigma_min with them.
public struct UniPCMultistepScheduler: Scheduler {
    public let config: SchedulerConfig
    public var kind: SchedulerKind { .unipc }
    public var order: Int { 1 }
    public var initNoiseSigma: Float { 1 }
    public private(set) var timesteps: [Double] = []
    public private(set) var sigmas: [Float] = []
    public let schedule: NoiseSchedule

    let solverOrder: Int
    let prediction: String
    let thresholding: Thresholding?
    let predictX0: Bool
    let bh1: Bool
    let lowerOrderFinal: Bool
    let disableCorrector: Set<Int>
    let karras: Bool
    let exponential: Bool
    let sigmaMin: Double?
    let sigmaMax: Double?
    let finalSigmaMin: Bool
    let spacing: TimestepSpacing
    let stepsOffset: Int

    private var modelOutputs: [Tensor?] = []
    private var lowerOrderNums = 0
    private var lastSample: Tensor?
    private var thisOrder = 0
    private var index = StepIndex()
    private var prepared = false

    public init(config: SchedulerConfig) throws {
        self.config = config
        schedule = try NoiseSchedule(config: config, supportsZeroSNR: true, zeroSNRLastAlpha: true)
        solverOrder = try config.int("solver_order", 2)
        guard solverOrder >= 1 else {
            throw SchedulerError.invalidValue(file: config.source, key: "solver_order", detail: "must be at least 1, got \(solverOrder)")
        }
        prediction = try config.choice("prediction_type", "epsilon", ["epsilon", "sample", "v_prediction"])
        thresholding = try Thresholding(config: config)
        predictX0 = try config.bool("predict_x0", true)
        // diffusers maps the DPM-Solver solver types onto bh2.
        bh1 = try config.choice("solver_type", "bh2", ["bh1", "bh2", "midpoint", "heun", "logrho"]) == "bh1"
        lowerOrderFinal = try config.bool("lower_order_final", true)
        if config.isNull("disable_corrector") {  // diffusers tests `step in None`, which fails
            throw SchedulerError.invalidValue(file: config.source, key: "disable_corrector", detail: "null is not a list of step indices")
        }
        if let v = config.raw("disable_corrector") {
            guard let list = v.arrayValue, list.allSatisfy({ $0.intValue != nil }) else {
                throw SchedulerError.invalidValue(file: config.source, key: "disable_corrector", detail: "expected a list of step indices, got \(v.description)")
            }
            disableCorrector = Set(list.compactMap(\.intValue))
        } else {
            disableCorrector = []
        }
        if let v = config.raw("solver_p") {
            throw SchedulerError.unsupported(file: config.source, key: "solver_p", value: v.description)
        }
        let sigmaOptions = try SigmaOptions(config)
        karras = sigmaOptions.karras
        exponential = sigmaOptions.exponential
        sigmaMin = sigmaOptions.sigmaMin
        sigmaMax = sigmaOptions.sigmaMax
        try config.requireOff("use_flow_sigmas")
        try config.requireOff("use_dynamic_shifting")
        finalSigmaMin = try config.choice("final_sigmas_type", "zero", ["zero", "sigma_min"]) == "sigma_min"
        spacing = try TimestepSpacing.read(config, default: "linspace")
        stepsOffset = try config.int("steps_offset", 0)
        sigmas = Sigmas.trainSigmas(schedule)
        timesteps = (0..<schedule.numTrainTimesteps).reversed().map(Double.init)
    }

    public mutating func setBeginIndex(_ index: Int) { self.index.begin = index }

    public mutating func setTimesteps(_ n: Int) throws {
        try checkSteps(n, schedule.numTrainTimesteps)
        let train = schedule.numTrainTimesteps
        var ts = Sigmas.multistepTimesteps(spacing, n, last: train, train: train, offset: stepsOffset)
        let trainSigmas = Sigmas.trainSigmas(schedule)
        if karras || exponential {
            let logSigmas = trainSigmas.map { Foundation.log($0) }
            let lo = sigmaMin ?? Double(trainSigmas[0]), hi = sigmaMax ?? Double(trainSigmas[trainSigmas.count - 1])
            let s = karras ? Sigmas.karras(min: lo, max: hi, n) : Sigmas.exponential(min: lo, max: hi, n)
            // Karras timesteps are rounded, exponential ones truncated by the int64 conversion.
            ts = s.map { karras ? roundEven(Sigmas.sigmaToT($0, logSigmas)) : Sigmas.sigmaToT($0, logSigmas).rounded(.towardZero) }
            // Here sigma_min means the schedule's own last sigma.
            sigmas = s.map { Float($0) } + [finalSigmaMin ? Float(s[s.count - 1]) : 0]
        } else {
            let ac0 = schedule.alphasCumprod[0]
            sigmas = ts.map { Float(Sigmas.interp($0, trainSigmas)) } + [finalSigmaMin ? ((1 - ac0) / ac0).squareRoot() : 0]
        }
        timesteps = ts
        modelOutputs = Array(repeating: nil, count: solverOrder)
        lowerOrderNums = 0
        lastSample = nil
        thisOrder = 0
        index.reset()
        prepared = true
    }

    public mutating func scaleModelInput(_ sample: Tensor, timestep: Double) throws -> Tensor { sample }

    private func convert(_ output: Tensor, sample: Tensor, step i: Int) throws -> Tensor {
        let (alpha, sigma) = DPMSolverMultistepScheduler.alphaSigma(sigmas[i])
        let what = "UniPC"
        if predictX0 {
            var x0: Tensor
            switch prediction {
            case "epsilon": x0 = try .schedZip(sample, output, what) { ($0 - sigma * $1) / alpha }
            case "sample": x0 = output
            default: x0 = try .schedZip(sample, output, what) { alpha * $0 - sigma * $1 }
            }
            if let thresholding { x0 = thresholding.apply(x0) }
            return x0
        }
        switch prediction {
        case "epsilon": return output
        case "sample": return try .schedZip(sample, output, what) { ($0 - alpha * $1) / sigma }
        default: return try .schedZip(output, sample, what) { alpha * $0 + sigma * $1 }
        }
    }

    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, generator: inout RandomGenerators?) throws -> Tensor {
        guard prepared else { throw SchedulerError.invalidUse("call setTimesteps before step") }
        let i: Int
        if let s = index.step { i = s } else {
            // diffusers falls back to the last index for a timestep not in the schedule.
            i = index.begin ?? ((try? Sigmas.index(of: timestep, in: timesteps)) ?? timesteps.count - 1)
        }
        guard i + 1 < sigmas.count else { throw SchedulerError.invalidUse("UniPC: step past the last timestep") }
        var sample = sample
        let converted = try convert(modelOutput, sample: sample, step: i)
        if i > 0, !disableCorrector.contains(i - 1), let last = lastSample {
            sample = try corrector(converted, last: last, this: sample, step: i, order: thisOrder)
        }
        for k in 0..<(solverOrder - 1) { modelOutputs[k] = modelOutputs[k + 1] }
        modelOutputs[solverOrder - 1] = converted
        let wanted = lowerOrderFinal ? min(solverOrder, timesteps.count - i) : solverOrder
        thisOrder = min(wanted, lowerOrderNums + 1)
        guard thisOrder > 0 else { throw SchedulerError.invalidUse("UniPC: step past the last timestep") }
        lastSample = sample
        let prev = try predictor(sample: sample, step: i, order: thisOrder)
        if lowerOrderNums < solverOrder { lowerOrderNums += 1 }
        index.step = i + 1
        return prev
    }

    private func history(_ back: Int) throws -> Tensor {
        guard back < solverOrder, let t = modelOutputs[solverOrder - 1 - back] else {
            throw SchedulerError.invalidUse("UniPC: missing model output history")
        }
        return t
    }

    /// The shared part of UniP and UniC: h, the ratios r_k, D1_k = (m_k - m0) / r_k, and the
    /// coefficients of x_t_ = c0 * x - c1 * m0 and of the correction term (`bh` = alpha_t or sigma_t times B(h)).
    private struct Terms {
        var c0: Float, c1: Float, bh: Float
        var rks: [Float]
        var d1s: [Tensor]
        var b: [Float]
        var hh: Float
    }

    /// `target` and `source` are sigma indices; `previous[k]` is the sigma index of history entry k + 1.
    private func terms(target: Int, source: Int, previous: [Int], order: Int) throws -> Terms {
        let t = DPMSolverMultistepScheduler.alphaSigma(sigmas[target])
        let s0 = DPMSolverMultistepScheduler.alphaSigma(sigmas[source])
        let lt = DPMSolverMultistepScheduler.lambda(t), l0 = DPMSolverMultistepScheduler.lambda(s0)
        let h = lt - l0
        let m0 = try history(0)
        var rks: [Float] = [], d1s: [Tensor] = []
        for k in 1..<max(order, 1) {
            guard previous[k - 1] >= 0 else { throw SchedulerError.invalidUse("UniPC: not enough history for order \(order)") }
            let si = DPMSolverMultistepScheduler.alphaSigma(sigmas[previous[k - 1]])
            let rk = (DPMSolverMultistepScheduler.lambda(si) - l0) / h
            rks.append(rk)
            d1s.append(try .schedZip(try history(k), m0, "UniPC") { ($0 - $1) / rk })
        }
        rks.append(1)
        let hh = predictX0 ? -h : h
        let hPhi1 = Foundation.expm1(hh)
        var hPhiK = hPhi1 / hh - 1
        var factorial = 1.0
        let bH = bh1 ? hh : Foundation.expm1(hh)
        var b: [Float] = []
        for k in 1...max(order, 1) {
            b.append(Float(Double(hPhiK) * factorial) / bH)
            factorial *= Double(k + 1)
            hPhiK = hPhiK / hh - Float(1 / factorial)
        }
        if predictX0 {
            return Terms(c0: t.sigma / s0.sigma, c1: t.alpha * hPhi1, bh: t.alpha * bH, rks: rks, d1s: d1s, b: b, hh: hh)
        }
        return Terms(c0: t.alpha / s0.alpha, c1: t.sigma * hPhi1, bh: t.sigma * bH, rks: rks, d1s: d1s, b: b, hh: hh)
    }

    /// Solves R rho = b with R[i][k] = rks[k]^i, the first `n` rows and columns.
    private static func rhos(_ rks: [Float], _ b: [Float], _ n: Int) throws -> [Float] {
        var m = (0..<n).map { i in (0..<n).map { k in Double(powf(rks[k], Float(i))) } + [Double(b[i])] }
        for col in 0..<n {
            guard let pivot = (col..<n).max(by: { abs(m[$0][col]) < abs(m[$1][col]) }), m[pivot][col] != 0 else {
                throw SchedulerError.invalidUse("UniPC: singular system for the rho coefficients")
            }
            m.swapAt(col, pivot)
            for r in (col + 1)..<max(n, col + 1) {
                let f = m[r][col] / m[col][col]
                for c in col...n { m[r][c] -= f * m[col][c] }
            }
        }
        var x = [Double](repeating: 0, count: n)
        for r in stride(from: n - 1, through: 0, by: -1) {
            var s = m[r][n]
            for c in (r + 1)..<max(n, r + 1) { s -= m[r][c] * x[c] }
            x[r] = s / m[r][r]
        }
        return x.map { Float($0) }
    }

    /// sum_k rho_k * D1_k (diffusers' einsum), or nil when there is no history term.
    private static func weighted(_ rhos: [Float], _ d1s: [Tensor]) throws -> Tensor? {
        var acc: Tensor?
        for (rho, d) in zip(rhos, d1s) {
            let term = d.schedMap { rho * $0 }
            acc = try acc.map { try .schedZip($0, term, "UniPC", +) } ?? term
        }
        return acc
    }

    /// UniP: from `sample` at sigma index i to i + 1.
    private func predictor(sample x: Tensor, step i: Int, order: Int) throws -> Tensor {
        let t = try terms(target: i + 1, source: i, previous: (1..<max(order, 1)).map { i - $0 }, order: order)
        let m0 = try history(0)
        let base = try Tensor.schedZip(x, m0, "UniPC") { [c0 = t.c0, c1 = t.c1] in c0 * $0 - c1 * $1 }
        var res: Tensor?
        if !t.d1s.isEmpty {
            let rhosP: [Float] = order == 2 ? [0.5] : try Self.rhos(t.rks, t.b, order - 1)
            res = try Self.weighted(rhosP, t.d1s)
        }
        let bh = t.bh
        guard let res else {
            // diffusers subtracts bh * 0 (NaN when bh is infinite, as it is for bh1 at a zero final sigma).
            let z = bh * 0
            return base.schedMap { $0 - z }
        }
        return try .schedZip(base, res, "UniPC") { $0 - bh * $1 }
    }

    /// UniC: corrects `this` (the prediction made from `last` at sigma index i - 1) with the new output.
    private func corrector(_ modelT: Tensor, last x: Tensor, this: Tensor, step i: Int, order: Int) throws -> Tensor {
        let t = try terms(target: i, source: i - 1, previous: (1..<max(order, 1)).map { i - ($0 + 1) }, order: order)
        let m0 = try history(0)
        let base = try Tensor.schedZip(x, m0, "UniPC") { [c0 = t.c0, c1 = t.c1] in c0 * $0 - c1 * $1 }
        let rhosC: [Float] = order == 1 ? [0.5] : try Self.rhos(t.rks, t.b, order)
        guard let last = rhosC.last else { throw SchedulerError.invalidUse("UniPC: empty corrector") }
        let bh = t.bh
        let d1t = try Tensor.schedZip(modelT, m0, "UniPC") { $0 - $1 }
        var corr = d1t.schedMap { last * $0 }
        if let res = try Self.weighted(Array(rhosC.dropLast()), t.d1s) {
            corr = try .schedZip(res, corr, "UniPC", +)
        }
        return try .schedZip(base, corr, "UniPC") { $0 - bh * $1 }
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
