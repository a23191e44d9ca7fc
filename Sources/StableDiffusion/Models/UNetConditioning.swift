import Foundation
import DiffusionTensor

/// What conditions one UNet call besides the noisy sample and its timestep, as one value: a model family
/// adds its inputs here (diffusers' `encoder_hidden_states`, `class_labels`, SDXL's `added_cond_kwargs`,
/// and next LCM's `timestep_cond`, ControlNet's residuals) instead of one more argument on the UNet, the
/// denoising loop and every pipeline.
///
/// Built by a pipeline for the batch the UNet sees: with classifier-free guidance that is the doubled batch
/// (negative half first), so the loop never reshapes it.
public struct UNetConditioning: Sendable {
    /// `[batch, tokens, crossAttentionDim]` text embeddings.
    public var encoderHiddenStates: Tensor
    /// Class labels when the config has class embeddings (the x4 upscaler's noise level): one for the whole
    /// batch, or one per sample.
    public var classLabels: [Float]?

    /// SDXL's `added_cond_kwargs`: `text_embeds` `[batch, pooledDim]` (the pooled prompt embedding) and
    /// `time_ids` `[batch, n]` (original size, crop top-left, target size or aesthetic score).
    public struct TextTime: Sendable {
        public var textEmbeds: Tensor
        public var timeIds: Tensor
        public init(textEmbeds: Tensor, timeIds: Tensor) {
            self.textEmbeds = textEmbeds
            self.timeIds = timeIds
        }
    }
    /// Needed by UNets with `addition_embed_type: "text_time"` (SDXL).
    public var textTime: TextTime?
    /// diffusers' `timestep_cond` `[batch, time_cond_proj_dim]`: LCM-distilled UNets' guidance-scale
    /// embedding (`guidanceScaleEmbedding`). Needed exactly when the config has `time_cond_proj_dim`.
    public var timestepCondition: Tensor?

    /// ControlNet's output, added to the UNet's skip connections (diffusers' `down_block_additional_residuals`)
    /// and to its mid block's output (`mid_block_additional_residual`); set per step by the denoising loop.
    public var controlResiduals: ControlResiduals?

    public init(encoderHiddenStates: Tensor, classLabels: [Float]? = nil, textTime: TextTime? = nil, timestepCondition: Tensor? = nil,
                controlResiduals: ControlResiduals? = nil) {
        self.encoderHiddenStates = encoderHiddenStates
        self.classLabels = classLabels
        self.textTime = textTime
        self.timestepCondition = timestepCondition
        self.controlResiduals = controlResiduals
    }

    /// The second (conditional) half of a classifier-free-guidance batch: what a ControlNet sees in guess mode.
    func conditionalHalf() throws -> UNetConditioning {
        func half(_ t: Tensor) throws -> Tensor { try t.slice(axis: 0, t.shape[0] / 2..<t.shape[0]) }
        let labels = classLabels.map { $0.count > 1 ? Array($0[($0.count / 2)...]) : $0 }
        return UNetConditioning(encoderHiddenStates: try half(encoderHiddenStates), classLabels: labels,
                                textTime: try textTime.map { TextTime(textEmbeds: try half($0.textEmbeds), timeIds: try half($0.timeIds)) },
                                timestepCondition: try timestepCondition.map(half))
    }

    /// diffusers' `get_guidance_scale_embedding(w, embedding_dim)` for each `w` (LCM pipelines pass
    /// `guidance_scale - 1`): sin and cos of `1000 w` times `exp(-i log(10000) / (dim/2 - 1))`, in float32.
    public static func guidanceScaleEmbedding(_ w: [Float], dim: Int) throws -> Tensor {
        let half = dim / 2
        guard half >= 2 else { throw TensorError.invalidArgument("guidance embedding width must be at least 4, got \(dim)") }
        let step = Float(log(Float(10000))) / Float(half - 1)
        let freqs = (0..<half).map { Float(exp(Float($0) * -step)) }
        var rows: [Float] = []
        rows.reserveCapacity(w.count * dim)
        for value in w {
            let scaled = value * 1000
            let args = freqs.map { scaled * $0 }
            rows += args.map { sin($0) } + args.map { cos($0) }
            if dim % 2 == 1 { rows.append(0) }
        }
        return try Tensor(shape: [w.count, dim], scalars: rows)
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
        if let width = config.timeCondProjDim {
            guard let cond = timestepCondition else {
                throw TensorError.invalidArgument("this UNet (time_cond_proj_dim \(width), LCM-distilled) needs the guidance-scale embedding (timestep_cond)")
            }
            guard cond.rank == 2, cond.shape[0] == batch, cond.shape[1] == width else {
                throw TensorError.shapeMismatch("UNet timestep_cond must be [\(batch), \(width)], got \(cond.shape)")
            }
        }
        if let added = config.textTimeEmbedding {
            guard let t = textTime else {
                throw TensorError.invalidArgument("this UNet (addition_embed_type text_time) needs the pooled text embeddings and time ids")
            }
            guard t.textEmbeds.rank == 2, t.textEmbeds.shape[0] == batch, t.timeIds.rank == 2, t.timeIds.shape[0] == batch else {
                throw TensorError.shapeMismatch("UNet text_embeds and time_ids must be [\(batch), n], got \(t.textEmbeds.shape) and \(t.timeIds.shape)")
            }
            let width = t.textEmbeds.shape[1] + t.timeIds.shape[1] * added.timeEmbedDim
            guard width == added.inputDim else {
                // diffusers' _get_add_time_ids check, with its advice.
                throw TensorError.shapeMismatch("UNet add embedding expects \(added.inputDim) inputs but got \(t.textEmbeds.shape[1]) pooled + \(t.timeIds.shape[1]) time ids x \(added.timeEmbedDim) = \(width); check the text encoder's projection_dim and whether the model needs an aesthetic score (a refiner) or a target size")
            }
        }
    }
}
