import Foundation

/// diffusers `TCDScheduler` (Trajectory Consistency Distillation: TCD LoRAs): LCM's timesteps; each step
/// predicts x0, re-noises it to an intermediate timestep `s = floor((1 - gamma) t_prev)`, and (gamma > 0,
/// not the last step) moves to `t_prev` with fresh noise. `gamma` is the pipelines' `eta` (diffusers passes
/// `eta` to any scheduler whose `step` takes it); calling `step` directly uses TCD's own default, 0.3.
public struct TCDScheduler: Scheduler {
    public let config: SchedulerConfig
    public var kind: SchedulerKind { .tcd }
    public var order: Int { 1 }
    public var initNoiseSigma: Float { 1 }
    public var timesteps: [Double] { position.timesteps }
    public let schedule: NoiseSchedule
    /// The stochasticity (`eta` of `step`), in [0, 1].
    public var gamma: Float = TCDScheduler.defaultGamma
    /// TCD's own default gamma (its `step`'s, and its model cards'): what the CLI and the server use when no
    /// eta is given, where diffusers' pipelines would pass their eta of 0.
    public static let defaultGamma: Float = 0.3

    let prediction: String
    let originalInferenceSteps: Int
    let finalAlphaCumprod: Float
    private var position = ConsistencyPosition()

    public init(config: SchedulerConfig) throws {
        self.config = config
        schedule = try NoiseSchedule(config: config, supportsZeroSNR: true)
        prediction = try config.choice("prediction_type", "epsilon", ["epsilon", "sample", "v_prediction"])
        originalInferenceSteps = try config.int("original_inference_steps", 50)
        finalAlphaCumprod = try config.bool("set_alpha_to_one", true) ? 1 : schedule.alphasCumprod[0]
    }

    public mutating func setEta(_ eta: Float) { gamma = eta }

    public mutating func setBeginIndex(_ index: Int) { position.beginIndex = index }

    public mutating func setTimesteps(_ n: Int) throws {
        position = ConsistencyPosition(timesteps: try consistencyTimesteps(n, train: schedule.numTrainTimesteps,
                                                                           original: originalInferenceSteps, scheduler: "TCD"))
    }

    public mutating func scaleModelInput(_ sample: Tensor, timestep: Double) throws -> Tensor { sample }

    public mutating func step(modelOutput: Tensor, timestep: Double, sample: Tensor, generator: inout RandomGenerators?) throws -> Tensor {
        guard !timesteps.isEmpty else { throw SchedulerError.invalidUse("call setTimesteps before step") }
        guard gamma >= 0, gamma <= 1 else { throw SchedulerError.invalidUse("TCD's gamma (eta) must be in [0, 1], got \(gamma)") }
        let (index, next) = position.step(at: timestep)
        let ac = schedule.alphasCumprod
        let t = Int(timestep)
        guard t >= 0, t < ac.count else { throw SchedulerError.invalidUse("TCD: timestep \(t) out of range") }
        let prevT = next ?? 0
        // torch: (1 - eta) * long tensor is float32, floored back to long.
        let s = Int((Float(1 - Double(gamma)) * Float(prevT)).rounded(.down))
        let aT = ac[t], bT = 1 - aT
        let aPrev = prevT >= 0 ? ac[prevT] : finalAlphaCumprod
        let aS = ac[s], bS = 1 - aS
        let sa = aT.squareRoot(), sb = bT.squareRoot(), ssa = aS.squareRoot(), ssb = bS.squareRoot()
        let x0: Tensor, eps: Tensor
        switch prediction {
        case "epsilon":
            x0 = try .schedZip(sample, modelOutput, "TCD step") { ($0 - sb * $1) / sa }
            eps = modelOutput
        case "sample":
            x0 = modelOutput
            eps = try .schedZip(sample, x0, "TCD step") { ($0 - sa * $1) / sb }
        default:
            x0 = try .schedZip(sample, modelOutput, "TCD step") { sa * $0 - sb * $1 }
            eps = try .schedZip(modelOutput, sample, "TCD step") { sa * $0 + sb * $1 }
        }
        let noised = try Tensor.schedZip(x0, eps, "TCD step") { ssa * $0 + ssb * $1 }
        guard gamma > 0, index != timesteps.count - 1 else { return noised }
        guard generator != nil else { throw SchedulerError.invalidUse("TCDScheduler with gamma > 0 draws noise and needs a generator") }
        let noise = try generator!.randnLike(modelOutput)
        let ratio = aPrev / aS
        let c0 = ratio.squareRoot(), c1 = (1 - ratio).squareRoot()
        return try .schedZip(noised, noise, "TCD step") { c0 * $0 + c1 * $1 }
    }

    public func addNoise(originalSamples: Tensor, noise: Tensor, timesteps: [Double]) throws -> Tensor {
        try addNoiseAlphas(schedule.alphasCumprod, originalSamples, noise, timesteps)
    }
}
