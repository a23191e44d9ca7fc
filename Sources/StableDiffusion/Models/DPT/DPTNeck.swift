import Foundation
import DiffusionTensor

/// One token-to-map reassemble stage of DPT-Hybrid (stages 2 and 3): the CLS readout concatenated to every
/// token and projected back (`readout_type="project"`, with the config's activation), tokens laid out as an
/// NHWC map, a 1x1 projection, then resampling by `factor` (transposed conv up, strided 3x3 conv down).
struct DPTReassembleLayer {
    enum Resize { case identity, up(DPTConvTranspose), down(Conv2D) }
    let readout: Linear
    let activation: Activation
    let projection: Linear
    let resize: Resize

    init(_ r: WeightReader, index i: Int, channels: Int, factor: Double, config c: DPTConfig) throws {
        let d = c.hiddenSize
        readout = try r.linear("neck.reassemble_stage.readout_projects.\(i).0", in: 2 * d, out: d)
        activation = c.hiddenAct
        let p = "neck.reassemble_stage.layers.\(i)"
        projection = try r.linear("\(p).projection", in: d, out: channels)
        if factor > 1 {
            let f = Int(factor)
            resize = .up(try DPTConvTranspose(weight: r.tensor("\(p).resize.weight", shape: [channels, channels, f, f]),
                                              bias: r.tensor("\(p).resize.bias", shape: [channels])))
        } else if factor == 1 {
            resize = .identity
        } else {
            // torch: Conv2d(kernel 3, stride int(1 / factor), padding 1).
            resize = .down(try r.conv2d("\(p).resize", in: channels, out: channels, kernel: 3, stride: Int(1 / factor), padding: .uniform(1)))
        }
    }

    func callAsFunction(_ hidden: Tensor) throws -> Tensor {
        let (n, t, d) = (hidden.shape[0], hidden.shape[1], hidden.shape[2])
        let tokens = t - 1
        let side = Int(Double(tokens).squareRoot())
        guard side * side == tokens else { throw TensorError.shapeMismatch("\(tokens) tokens do not form a square map") }
        // [token, CLS] per position, as torch.cat((hidden_state, readout), -1).
        var joined = Tensor(uninitializedShape: [n, tokens, 2 * d])
        let src = hidden.unsafePointer
        joined.withUnsafeMutableBufferPointer { jb in
            let j = jb.baseAddress!
            for b in 0..<n {
                let cls = src + b * t * d
                for k in 0..<tokens {
                    let dst = j + (b * tokens + k) * 2 * d
                    dst.update(from: cls + (k + 1) * d, count: d)
                    (dst + d).update(from: cls, count: d)
                }
            }
        }
        let mapped = try readout(joined, activation: activation).reshaped([n, side, side, d])
        let projected = try projection(mapped)
        switch resize {
        case .identity: return projected
        case .up(let convT): return try convT(projected)
        case .down(let conv): return try conv(projected)
        }
    }
}

/// `DPTPreActResidualLayer`: `x + conv2(relu(conv1(relu(x))))`, batch norm (when configured) folded into the convs.
struct DPTPreActResidual {
    let conv1: Conv2D, conv2: Conv2D

    init(_ r: WeightReader, _ p: String, config c: DPTConfig) throws {
        let ch = c.fusionHiddenSize
        func conv(_ n: Int) throws -> Conv2D {
            let w = try r.tensor("\(p).convolution\(n).weight", shape: [ch, ch, 3, 3])
            let b = c.useBiasInFusionResidual ? try r.tensor("\(p).convolution\(n).bias", shape: [ch]) : nil
            guard c.useBatchNormInFusionResidual else { return try Conv2D(weight: w, bias: b, padding: .uniform(1)) }
            let bn = "\(p).batch_norm\(n)"
            let folded = try dptFoldBatchNorm(
                weight: w, bias: b, gamma: r.tensor("\(bn).weight", shape: [ch]), beta: r.tensor("\(bn).bias", shape: [ch]),
                mean: r.tensor("\(bn).running_mean", shape: [ch]), variance: r.tensor("\(bn).running_var", shape: [ch]))
            // A step counter for training; present in torch state dicts, meaningless here.
            _ = try r.optionalTensor("\(bn).num_batches_tracked", shape: [])
            return try Conv2D(weight: folded.weight, bias: folded.bias, padding: .uniform(1))
        }
        conv1 = try conv(1)
        conv2 = try conv(2)
    }

    func callAsFunction(_ x: Tensor) throws -> Tensor {
        let h = try conv1(x.dptReLU()).dptReLU()
        return try conv2(h, residual: x)
    }
}

/// `DPTFeatureFusionLayer`: adds the (resized) skip map through a residual unit, refines, upsamples x2
/// (bilinear, align_corners=True) and projects.
struct DPTFusionLayer {
    let residual1: DPTPreActResidual, residual2: DPTPreActResidual
    let projection: Linear

    init(_ r: WeightReader, index i: Int, config c: DPTConfig) throws {
        let p = "neck.fusion_stage.layers.\(i)"
        residual1 = try DPTPreActResidual(r, "\(p).residual_layer1", config: c)
        residual2 = try DPTPreActResidual(r, "\(p).residual_layer2", config: c)
        projection = try r.linear("\(p).projection", in: c.fusionHiddenSize, out: c.fusionHiddenSize)
    }

    func callAsFunction(_ hidden: Tensor, skip: Tensor?) throws -> Tensor {
        var x = hidden
        if var skip {
            if skip.shape != x.shape { skip = try skip.resized(height: x.shape[1], width: x.shape[2], mode: .bilinear) }
            x = try x + residual1(skip)
        }
        x = try residual2(x)
        x = try x.dptResizedBilinearAlignCorners(height: 2 * x.shape[1], width: 2 * x.shape[2])
        return try projection(x)
    }
}

/// `DPTNeck` for the hybrid model: reassemble (stages 0-1 are the BiT maps as they are), 3x3 convs to the
/// fusion width, and fusion from the coarsest map up. Returns the fused maps, coarsest first.
struct DPTNeck {
    let reassemble: [DPTReassembleLayer?]
    let convs: [Conv2D]
    let fusion: [DPTFusionLayer]

    init(_ r: WeightReader, config c: DPTConfig) throws {
        reassemble = try (0..<4).map { i in
            i <= 1 ? nil : try DPTReassembleLayer(r, index: i, channels: c.neckHiddenSizes[i], factor: c.reassembleFactors[i], config: c)
        }
        convs = try c.neckHiddenSizes.enumerated().map { i, ch in
            try r.conv2d("neck.convs.\(i)", in: ch, out: c.fusionHiddenSize, kernel: 3, padding: .uniform(1), bias: false)
        }
        fusion = try (0..<4).map { try DPTFusionLayer(r, index: $0, config: c) }
    }

    func callAsFunction(maps: [Tensor], tokens: [Tensor]) throws -> [Tensor] {
        let stages = maps + tokens
        var features: [Tensor] = []
        for (i, s) in stages.enumerated() {
            let mapped = try reassemble[i].map { try $0(s) } ?? s
            features.append(try convs[i](mapped))
        }
        var fused: [Tensor] = []
        var current: Tensor?
        for (layer, feature) in zip(fusion, features.reversed()) {
            let next = try current.map { try layer($0, skip: feature) } ?? layer(feature, skip: nil)
            fused.append(next)
            current = next
        }
        return fused
    }
}
