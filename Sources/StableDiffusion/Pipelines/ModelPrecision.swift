import DiffusionTensor

/// The networks a pipeline loads, for deciding what each one computes in.
public enum PipelineModel: String, Sendable, CaseIterable {
    case textEncoder, unet, vae
}

extension ComputePrecision {
    /// What `model` computes in when a pipeline is loaded with precision `self`: the one place this is
    /// decided. bf16 covers all three. The VAE was measured before joining: SD 1.5's decoder (torch's
    /// default init, 512x512) gives a picture 51 dB from fp32's (max 5 levels of 255), far from visible,
    /// and decodes about 1.5x faster. Inside a bf16 model the convolutions, linear layers and
    /// attention's two products run in bf16 (attention follows its projections' precision); norms, softmax
    /// and the element-wise ops stay fp32. The depth estimator (DPT) is always fp32.
    public func forModel(_ model: PipelineModel) -> ComputePrecision {
        switch (self, model) {
        case (.fp32, _): return .fp32
        case (.bf16, .textEncoder), (.bf16, .unet), (.bf16, .vae): return .bf16
        }
    }
}
