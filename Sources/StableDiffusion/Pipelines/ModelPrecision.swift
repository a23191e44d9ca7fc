import DiffusionTensor

/// The networks a pipeline loads, for deciding what each one computes in.
public enum PipelineModel: String, Sendable, CaseIterable {
    case textEncoder, unet, vae
}

extension ComputePrecision {
    /// What `model` computes in when a pipeline is loaded with precision `self`: the one place this is
    /// decided. bf16 covers the text encoder and the UNet (almost all of the time spent); the VAE keeps
    /// fp32, which costs one decode per image and keeps its pixels exact. Inside a bf16 model only
    /// the convolutions and linear layers change: attention's products, norms and softmax stay fp32,
    /// so a bf16 attention kernel would be wired through here and the attention blocks.
    public func forModel(_ model: PipelineModel) -> ComputePrecision {
        switch (self, model) {
        case (.fp32, _): return .fp32
        case (.bf16, .textEncoder), (.bf16, .unet): return .bf16
        case (.bf16, .vae): return .fp32
        }
    }
}
