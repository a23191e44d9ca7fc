import DiffusionTensor

/// What conditions one UNet call besides the noisy sample and its timestep, as one value: a model family
/// adds its inputs here (diffusers' `encoder_hidden_states`, `class_labels`, and next SDXL's
/// `added_cond_kwargs`, LCM's `timestep_cond`, ControlNet's residuals) instead of one more argument on the
/// UNet, the denoising loop and every pipeline.
///
/// Built by a pipeline for the batch the UNet sees: with classifier-free guidance that is the doubled batch
/// (negative half first), so the loop never reshapes it.
public struct UNetConditioning: Sendable {
    /// `[batch, tokens, crossAttentionDim]` text embeddings.
    public var encoderHiddenStates: Tensor
    /// Class labels when the config has class embeddings (the x4 upscaler's noise level): one for the whole
    /// batch, or one per sample.
    public var classLabels: [Float]?

    public init(encoderHiddenStates: Tensor, classLabels: [Float]? = nil) {
        self.encoderHiddenStates = encoderHiddenStates
        self.classLabels = classLabels
    }

    /// The batch size these inputs are for.
    public var batchSize: Int { encoderHiddenStates.shape.first ?? 0 }

    /// Checks the inputs against a UNet's config and a batch of `batch` samples, naming what is wrong.
    func validate(for config: UNet2DConditionConfig, batch: Int) throws {
        guard encoderHiddenStates.rank == 3, encoderHiddenStates.shape[0] == batch else {
            throw TensorError.shapeMismatch("UNet encoder hidden states must be [\(batch), tokens, dim], got \(encoderHiddenStates.shape)")
        }
        if config.classEmbedding != nil {
            guard let labels = classLabels, labels.count == batch || labels.count == 1 else {
                throw TensorError.invalidArgument("this UNet needs class labels (one per sample)")
            }
        }
    }
}
