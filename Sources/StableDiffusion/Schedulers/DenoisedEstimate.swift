import Foundation

/// The model's estimate of the clean latents at one step, from its output there: what AUTOMATIC1111 decodes
/// when a run is interrupted (its samplers' "denoised", or `pred_x0`), rather than the still-noisy latents.
enum DenoisedEstimate {
    /// - Parameters:
    ///   - modelOutput: the (guided) UNet output at `timestep`.
    ///   - scaledSample: the scheduler's `scaleModelInput` of the latents at that step. That is the
    ///     variance-preserving sample `sqrt(abar) x0 + sqrt(1 - abar) noise` for every scheduler: the sigma
    ///     schedulers divide their `x0 + sigma noise` by `sqrt(sigma^2 + 1)`, and abar = 1 / (sigma^2 + 1).
    ///   - timestep: the UNet timestep; fractional ones (Karras sigmas) interpolate sigma linearly in t.
    static func compute(modelOutput: Tensor, scaledSample: Tensor, timestep: Double, config: SchedulerConfig) throws -> Tensor {
        let prediction = try config.choice("prediction_type", "epsilon", ["epsilon", "v_prediction", "sample", "original_sample"])
        if prediction == "sample" || prediction == "original_sample" { return modelOutput }
        let schedule = try NoiseSchedule(config: config, supportsZeroSNR: true, zeroSNRLastAlpha: true,
                                         extraSchedules: ["sigmoid", "laplace", "exp"])
        let sigmas = Sigmas.trainSigmas(schedule)
        let t = min(max(timestep, 0), Double(sigmas.count - 1))
        let lo = Int(t.rounded(.down)), hi = min(lo + 1, sigmas.count - 1)
        let sigma = Double(sigmas[lo]) + (t - Double(lo)) * Double(sigmas[hi] - sigmas[lo])
        let alphaBar = 1 / (sigma * sigma + 1)
        let a = Float(alphaBar.squareRoot()), s = Float((1 - alphaBar).squareRoot())
        guard modelOutput.shape == scaledSample.shape else {
            throw TensorError.shapeMismatch("denoised estimate: model output \(modelOutput.shape), sample \(scaledSample.shape)")
        }
        var out = Tensor(uninitializedShape: scaledSample.shape)
        scaledSample.withUnsafeBufferPointer { x in
            modelOutput.withUnsafeBufferPointer { m in
                out.withUnsafeMutableBufferPointer { o in
                    if prediction == "v_prediction" {
                        for i in 0..<o.count { o[i] = a * x[i] - s * m[i] }
                    } else {
                        for i in 0..<o.count { o[i] = (x[i] - s * m[i]) / a }
                    }
                }
            }
        }
        return out
    }
}
