import DiffusionTensor

/// The UNet's and the ControlNet's shared embedding of one call's timestep and the inputs added to it:
/// diffusers' `time_proj` + `time_embedding` (with LCM's `cond_proj`), `class_embedding` and SDXL's
/// `add_time_proj` + `add_embedding`. Both models read the same weight names from the same config keys, so
/// the rule lives here once.
final class TimeEmbedding {
    let config: UNet2DConditionConfig
    let linear1: Linear, linear2: Linear
    /// LCM's `time_embedding.cond_proj` (no bias): the guidance embedding onto the timestep features.
    let condProj: Linear?
    let classTable: Tensor?
    let classLinear1: Linear?, classLinear2: Linear?
    /// SDXL's `add_embedding` (a `TimestepEmbedding` of the pooled text embedding and time-id features).
    let addLinear1: Linear?, addLinear2: Linear?

    init(_ r: WeightReader, config c: UNet2DConditionConfig) throws {
        config = c
        let ch0 = c.blockOutChannels[0], temb = c.timeEmbeddingDim
        linear1 = try r.linear("time_embedding.linear_1", in: ch0, out: temb)
        linear2 = try r.linear("time_embedding.linear_2", in: temb, out: temb)
        condProj = try c.timeCondProjDim.map { try r.linear("time_embedding.cond_proj", in: $0, out: ch0, bias: false) }
        switch c.classEmbedding {
        case .table(let count)?:
            classTable = try r.tensor("class_embedding.weight", shape: [count, temb])
            classLinear1 = nil; classLinear2 = nil
        case .timestep?:
            classTable = nil
            classLinear1 = try r.linear("class_embedding.linear_1", in: ch0, out: temb)
            classLinear2 = try r.linear("class_embedding.linear_2", in: temb, out: temb)
        case .identity?, nil:
            classTable = nil; classLinear1 = nil; classLinear2 = nil
        }
        if let added = c.textTimeEmbedding {
            addLinear1 = try r.linear("add_embedding.linear_1", in: added.inputDim, out: temb)
            addLinear2 = try r.linear("add_embedding.linear_2", in: temb, out: temb)
        } else {
            addLinear1 = nil; addLinear2 = nil
        }
    }

    /// The embedding `[batch, time_embed_dim]` before the blocks' SiLU, for one timestep per sample.
    func callAsFunction(_ steps: [Float], conditioning: UNetConditioning) throws -> Tensor {
        let c = config
        let b = steps.count
        var features = try timestepFeatures(steps, dim: c.blockOutChannels[0], flipSinToCos: c.flipSinToCos, freqShift: c.freqShift)
        if let condProj, let cond = conditioning.timestepCondition { features = try features + condProj(cond) }
        var emb = try linear2(try linear1(features, activation: .silu))
        if let classEmbedding = c.classEmbedding, let labels = conditioning.classLabels {
            let perSample = labels.count == 1 ? [Float](repeating: labels[0], count: b) : labels
            emb = try emb + classEmbeddings(perSample, kind: classEmbedding)
        }
        if let added = c.textTimeEmbedding, let textTime = conditioning.textTime, let addLinear1, let addLinear2 {
            emb = try emb + addLinear2(try addLinear1(try textTimeFeatures(textTime, timeEmbedDim: added.timeEmbedDim), activation: .silu))
        }
        return emb
    }

    /// `concat([text_embeds, add_time_proj(time_ids.flatten()).reshape(batch, -1)], -1)`.
    private func textTimeFeatures(_ t: UNetConditioning.TextTime, timeEmbedDim: Int) throws -> Tensor {
        let b = t.textEmbeds.shape[0], pooled = t.textEmbeds.shape[1], ids = t.timeIds.shape[1]
        let features = timestepFeatures(t.timeIds.scalars, dim: timeEmbedDim, flipSinToCos: config.flipSinToCos, freqShift: config.freqShift)
        var out = Tensor(uninitializedShape: [b, pooled + ids * timeEmbedDim])
        let width = pooled + ids * timeEmbedDim
        out.withUnsafeMutableBufferPointer { o in
            let text = t.textEmbeds.unsafePointer, time = features.unsafePointer
            for i in 0..<b {
                (o.baseAddress! + i * width).update(from: text + i * pooled, count: pooled)
                (o.baseAddress! + i * width + pooled).update(from: time + i * ids * timeEmbedDim, count: ids * timeEmbedDim)
            }
        }
        return out
    }

    private func classEmbeddings(_ labels: [Float], kind: UNet2DConditionConfig.ClassEmbedding) throws -> Tensor {
        let temb = config.timeEmbeddingDim
        switch kind {
        case .table(let count):
            guard let table = classTable else { throw TensorError.invalidArgument("class embedding table missing") }
            var out = Tensor(uninitializedShape: [labels.count, temb])
            try out.withUnsafeMutableBufferPointer { p in
                for (i, l) in labels.enumerated() {
                    let idx = Int(l)
                    guard Float(idx) == l, idx >= 0, idx < count else {
                        throw TensorError.invalidArgument("class label \(l) outside 0..<\(count)")
                    }
                    (p.baseAddress! + i * temb).update(from: table.unsafePointer + idx * temb, count: temb)
                }
            }
            return out
        case .timestep:
            guard let l1 = classLinear1, let l2 = classLinear2 else { throw TensorError.invalidArgument("class embedding missing") }
            let f = timestepFeatures(labels, dim: config.blockOutChannels[0], flipSinToCos: config.flipSinToCos, freqShift: config.freqShift)
            return try l2(try l1(f, activation: .silu))
        case .identity:
            throw TensorError.invalidArgument("identity class embeddings need embedding vectors, not labels")
        }
    }
}
