import Foundation
import DiffusionTensor

/// The loop every Stable Diffusion pipeline shares: scale the model input, run the UNet on the
/// (doubled, with guidance) batch, combine with classifier-free guidance, step the scheduler.
struct DenoisingLoop {
    let unet: UNet2DConditionModel
    let guidanceScale: Float
    let classifierFreeGuidance: Bool
    /// Checked after every step: when set, the loop stops there and returns the denoised estimate.
    var interruption: PipelineInterruption? = nil
    /// ControlNets whose residuals each step's UNet call gets.
    var control: ControlNetGuidance? = nil

    /// The loop's result: the final latents, or the denoised estimate at the step where it was interrupted.
    struct Output {
        var latents: Tensor
        /// The steps done before an interruption stopped the loop; nil when it ran to the end.
        var stoppedAfterStep: Int?
    }

    /// - Parameters:
    ///   - extraChannels: concatenated after the scaled latents on the channel axis at every step
    ///     (inpainting's mask + masked-image latents, the upscaler's noised low-res image), already
    ///     doubled for guidance.
    ///   - afterStep: called with the step index, the new latents and the scheduler in its state after the
    ///     step (inpainting's blending of known regions, whose `add_noise` depends on that state).
    func run(latents initial: Tensor, timesteps: [Double], scheduler: inout any Scheduler, conditioning: UNetConditioning,
             generator: inout RandomGenerators?, extraChannels: Tensor? = nil,
             progress: ProgressHandler?, afterStep: ((Int, Tensor, any Scheduler) throws -> Tensor)? = nil) throws -> Output {
        var latents = initial
        let start = Date()
        for (i, t) in timesteps.enumerated() {
            let doubled = classifierFreeGuidance ? try Tensor.concatenate([latents, latents], axis: 0) : latents
            let scaled = try scheduler.scaleModelInput(doubled, timestep: t)
            var input = scaled
            if let extraChannels { input = try Tensor.concatenate([input, extraChannels], axis: 3) }
            var stepConditioning = conditioning
            if let control {
                stepConditioning.controlResiduals = try control.residuals(step: i, of: timesteps.count, input: scaled, timestep: t,
                                                                          conditioning: conditioning, classifierFreeGuidance: classifierFreeGuidance)
            }
            var noise = try unet(sample: input, timesteps: [Float(t)], conditioning: stepConditioning)
            if classifierFreeGuidance {
                noise = try guided(noise)
            }
            latents = try scheduler.step(modelOutput: noise, timestep: t, sample: latents, generator: &generator)
            if let afterStep { latents = try afterStep(i, latents, scheduler) }
            if let progress, !progress(PipelineProgress(step: i + 1, totalSteps: timesteps.count, timestep: t,
                                                        elapsedSeconds: Date().timeIntervalSince(start), latents: latents)) {
                throw PipelineError.cancelled
            }
            if let interruption, interruption.isInterrupted, i + 1 < timesteps.count {
                let sample = classifierFreeGuidance ? try scaled.slice(axis: 0, 0..<latents.shape[0]) : scaled
                let denoised = try DenoisedEstimate.compute(modelOutput: noise, scaledSample: sample, timestep: t, config: scheduler.config)
                return Output(latents: denoised, stoppedAfterStep: i + 1)
            }
        }
        return Output(latents: latents, stoppedAfterStep: nil)
    }

    /// `uncond + g * (text - uncond)` over the two halves of the batch.
    private func guided(_ noise: Tensor) throws -> Tensor {
        let half = noise.shape[0] / 2
        let per = noise.count / noise.shape[0] * half
        var out = Tensor(uninitializedShape: [half] + noise.shape.dropFirst())
        let g = guidanceScale
        noise.withUnsafeBufferPointer { n in
            out.withUnsafeMutableBufferPointer { o in
                for i in 0..<per { o[i] = n[i] + g * (n[per + i] - n[i]) }
            }
        }
        return out
    }
}
