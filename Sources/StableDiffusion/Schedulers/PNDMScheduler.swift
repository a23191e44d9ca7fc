/// diffusers `PNDMScheduler`: pseudo linear multistep (PLMS), with the Runge-Kutta warm-up steps
/// unless `skip_prk_steps` is set (as Stable Diffusion's configs do).
public struct PNDMScheduler: Scheduler {
    public let config: SchedulerConfig
    public var kind: SchedulerKind { .pndm }
    public var order: Int { 1 }
    public var initNoiseSigma: Float { 1 }
    public private(set) var timesteps: [Double] = []
    public let schedule: NoiseSchedule

    let skipPRK: Bool
    let setAlphaToOne: Bool
    let vPrediction: Bool
    let spacing: TimestepSpacing
    let stepsOffset: Int
    let finalAlphaCumprod: Float

    private var numInferenceSteps = 0
    private var prkTimesteps: [Int] = []
    private var ets: [Tensor] = []
    private var counter = 0
    private var curSample: Tensor?
    private var curModelOutput: Tensor?

    public init(config: SchedulerConfig) throws {
        self.config = config
        schedule = try NoiseSchedule(config: config, supportsZeroSNR: false)
        skipPRK = try config.bool("skip_prk_steps", false)
        setAlphaToOne = try config.bool("set_alpha_to_one", false)
        vPrediction = try config.choice("prediction_type", "epsilon", ["epsilon", "v_prediction"]) == "v_prediction"
        spacing = try TimestepSpacing.read(config, default: "leading")
        stepsOffset = try config.int("steps_offset", 0)
        finalAlphaCumprod = setAlphaToOne ? 1 : schedule.alphasCumprod[0]
    }

    public mutating func setBeginIndex(_ index: Int) {}

    public mutating func setTimesteps(_ n: Int) throws {
        let train = schedule.numTrainTimesteps
        try checkSteps(n, train)
        numInferenceSteps = n
        // Ascending, as diffusers' `_timesteps`.
        let base: [Int] = spacedTimesteps(spacing, n, train: train, offset: stepsOffset).reversed()
        var plms: [Int]
        if skipPRK {
            prkTimesteps = []
            plms = Array(base.dropLast())
            if base.count >= 2 { plms.append(base[base.count - 2]) }
            plms.append(base[base.count - 1])
            plms.reverse()
        } else {
            let last = Array(base.suffix(4))
            var prk: [Int] = []
            for t in last { prk.append(t); prk.append(t + train / n / 2) }
            var rep: [Int] = []
            for t in prk.dropLast() { rep.append(t); rep.append(t) }
            prkTimesteps = Array(rep.dropFirst().dropLast().reversed())
            plms = Array(base.dropLast(3).reversed())
        }
        timesteps = (prkTimesteps + plms).map(Double.init)
        ets = []
        counter = 0
        curSample = nil
        curModelOutput = nil
    }

    public mutating func scaleModelInput(_ sample: Tensor, timestep: Double) throws -> Tensor { sample }

    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, generator: inout RandomGenerators?) throws -> Tensor {
        guard numInferenceSteps > 0 else { throw SchedulerError.invalidUse("call setTimesteps before step") }
        if counter < prkTimesteps.count && !skipPRK {
            return try stepPRK(modelOutput, Int(timestep), sample)
        }
        return try stepPLMS(modelOutput, Int(timestep), sample)
    }

    private mutating func stepPRK(_ modelOutput: Tensor, _ timestepIn: Int, _ sample: Tensor) throws -> Tensor {
        let train = schedule.numTrainTimesteps
        let diffToPrev = counter % 2 != 0 ? 0 : train / numInferenceSteps / 2
        let prevTimestep = timestepIn - diffToPrev
        let timestep = prkTimesteps[counter / 4 * 4]
        var output = modelOutput
        let sixth = Float(1.0 / 6.0), third = Float(1.0 / 3.0)
        func accumulate(_ acc: Tensor?, _ w: Float) throws -> Tensor {
            guard let acc else { return modelOutput.schedMap { w * $0 } }
            return try .schedZip(acc, modelOutput, "PNDM step") { $0 + w * $1 }
        }
        switch counter % 4 {
        case 0:
            curModelOutput = try accumulate(curModelOutput, sixth)
            ets.append(modelOutput)
            curSample = sample
        case 1, 2:
            curModelOutput = try accumulate(curModelOutput, third)
        default:
            output = try accumulate(curModelOutput, sixth)
            curModelOutput = nil
        }
        let prev = try prevSample(curSample ?? sample, timestep, prevTimestep, output)
        counter += 1
        return prev
    }

    private mutating func stepPLMS(_ modelOutput: Tensor, _ timestepIn: Int, _ sampleIn: Tensor) throws -> Tensor {
        let ratio = schedule.numTrainTimesteps / numInferenceSteps
        var timestep = timestepIn
        var prevTimestep = timestep - ratio
        var sample = sampleIn
        if !skipPRK && ets.count < 3 {
            throw SchedulerError.invalidUse("PNDM: PLMS steps need at least 12 PRK steps first")
        }
        if counter != 1 {
            ets = Array(ets.suffix(3))
            ets.append(modelOutput)
        } else {
            prevTimestep = timestep
            timestep = timestep + ratio
        }
        var output = modelOutput
        let e = ets
        let n = e.count
        if n == 1 && counter == 0 {
            curSample = sample
        } else if n == 1 && counter == 1 {
            output = try .schedZip(modelOutput, e[n - 1], "PNDM step") { ($0 + $1) / 2 }
            guard let cur = curSample else { throw SchedulerError.invalidUse("PNDM: missing first sample") }
            sample = cur
            curSample = nil
        } else if n == 2 {
            output = try .schedZip(e[1], e[0], "PNDM step") { (3 * $0 - $1) / 2 }
        } else if n == 3 {
            output = try .schedZip3(e[2], e[1], e[0], "PNDM step") { (23 * $0 - 16 * $1 + 5 * $2) / 12 }
        } else {
            let partial = try Tensor.schedZip(e[n - 1], e[n - 2], "PNDM step") { 55 * $0 - 59 * $1 }
            let c = Float(1.0 / 24.0)
            output = try .schedZip3(partial, e[n - 3], e[n - 4], "PNDM step") { c * ($0 + 37 * $1 - 9 * $2) }
        }
        let prev = try prevSample(sample, timestep, prevTimestep, output)
        counter += 1
        return prev
    }

    /// Formula (9) of the PNDM paper, as `_get_prev_sample`.
    private func prevSample(_ sample: Tensor, _ t: Int, _ prevT: Int, _ modelOutputIn: Tensor) throws -> Tensor {
        let ac = schedule.alphasCumprod
        guard t >= 0, t < ac.count, prevT < ac.count else { throw SchedulerError.invalidUse("PNDM: timestep \(t) out of range") }
        let aT = ac[t]
        let aPrev = prevT >= 0 ? ac[prevT] : finalAlphaCumprod
        let bT = 1 - aT, bPrev = 1 - aPrev
        var modelOutput = modelOutputIn
        if vPrediction {
            let sa = aT.squareRoot(), sb = bT.squareRoot()
            modelOutput = try .schedZip(modelOutputIn, sample, "PNDM step") { sa * $0 + sb * $1 }
        }
        let sampleCoeff = (aPrev / aT).squareRoot()
        let denom = aT * bPrev.squareRoot() + (aT * bT * aPrev).squareRoot()
        let diff = aPrev - aT
        return try .schedZip(sample, modelOutput, "PNDM step") { sampleCoeff * $0 - diff * $1 / denom }
    }

    public func addNoise(originalSamples: Tensor, noise: Tensor, timesteps: [Double]) throws -> Tensor {
        try addNoiseAlphas(schedule.alphasCumprod, originalSamples, noise, timesteps)
    }
}
