import Foundation
import DiffusionTensor

/// A BiT `WeightStandardizedConv2d`: the weight is standardised once at load; "SAME" padding that depends
/// on the input size (stride > 1) is resolved per call, with one convolution kept per padding seen.
final class BitConv: @unchecked Sendable {
    let weight: Tensor
    let kernel: Int, stride: Int
    let dynamic: Bool
    let staticPadding: Int
    private var convs: [ConvPadding: Conv2D] = [:]
    private let lock = NSLock()

    init(_ r: WeightReader, _ prefix: String, in i: Int, out o: Int, kernel k: Int, stride s: Int,
         padding: BitPadding, eps: Double = 1e-8) throws {
        weight = dptStandardizedWeight(try r.tensor("\(prefix).weight", shape: [o, i, k, k]), eps: eps)
        kernel = k; stride = s
        switch padding {
        case .same:
            dynamic = !(s == 1 && (k - 1) % 2 == 0)
            staticPadding = dynamic ? 0 : (k - 1) / 2
        case .valid:
            dynamic = false; staticPadding = 0
        case .symmetric:
            dynamic = false; staticPadding = ((s - 1) + (k - 1)) / 2
        }
    }

    /// transformers' `DynamicPad2d`: total `max((ceil(x / s) - 1) * s + k - x, 0)`, the extra pixel after.
    static func samePadding(_ size: Int, kernel k: Int, stride s: Int) -> (Int, Int) {
        let total = max(((size + s - 1) / s - 1) * s + k - size, 0)
        return (total / 2, total - total / 2)
    }

    func callAsFunction(_ x: Tensor) throws -> Tensor {
        var p = ConvPadding.uniform(staticPadding)
        if dynamic {
            let (t, b) = Self.samePadding(x.shape[1], kernel: kernel, stride: stride)
            let (l, r) = Self.samePadding(x.shape[2], kernel: kernel, stride: stride)
            p = ConvPadding(top: t, left: l, bottom: b, right: r)
        }
        lock.lock()
        let conv: Conv2D
        if let c = convs[p] {
            conv = c
        } else {
            do { conv = try Conv2D(weight: weight, bias: nil, stride: stride, padding: p) } catch { lock.unlock(); throw error }
            convs[p] = conv
        }
        lock.unlock()
        return try conv(x)
    }
}

/// `BitBottleneckLayer` (ResNet v1.5 bottleneck with weight-standardised convs and GroupNorm).
struct BitBottleneck {
    let downsample: (conv: BitConv, norm: GroupNorm)?
    let conv1: BitConv, norm1: GroupNorm
    let conv2: BitConv, norm2: GroupNorm
    let conv3: BitConv, norm3: GroupNorm

    init(_ r: WeightReader, _ p: String, in i: Int, out o: Int, stride: Int, first: Bool, config c: BitBackboneConfig) throws {
        let mid = BitBackboneConfig.makeDiv(Double(o) * 0.25)
        let g = c.numGroups, pad = c.globalPadding
        downsample = first ? (try BitConv(r, "\(p).downsample.conv", in: i, out: o, kernel: 1, stride: stride, padding: pad),
                              try r.groupNorm("\(p).downsample.norm", channels: o, groups: g, eps: 1e-5)) : nil
        conv1 = try BitConv(r, "\(p).conv1", in: i, out: mid, kernel: 1, stride: 1, padding: pad)
        norm1 = try r.groupNorm("\(p).norm1", channels: mid, groups: g, eps: 1e-5)
        conv2 = try BitConv(r, "\(p).conv2", in: mid, out: mid, kernel: 3, stride: stride, padding: pad)
        norm2 = try r.groupNorm("\(p).norm2", channels: mid, groups: g, eps: 1e-5)
        conv3 = try BitConv(r, "\(p).conv3", in: mid, out: o, kernel: 1, stride: 1, padding: pad)
        norm3 = try r.groupNorm("\(p).norm3", channels: o, groups: g, eps: 1e-5)
    }

    func callAsFunction(_ x: Tensor) throws -> Tensor {
        let shortcut = try downsample.map { try $0.norm($0.conv(x)) } ?? x
        var h = try norm1(conv1(x)).dptReLU()
        h = try norm2(conv2(h)).dptReLU()
        h = try norm3(conv3(h))
        return try h.dptAddReLU(shortcut)
    }
}

/// transformers' `BitBackbone` with `layer_type="bottleneck"`: stem (conv 7x7/2, GroupNorm+ReLU, max-pool 3x3/2)
/// and stages of bottlenecks; returns the feature maps named by `out_indices` (stem = 0).
struct BitBackbone {
    let config: BitBackboneConfig
    let stemConv: BitConv
    let stemNorm: GroupNorm
    let stages: [[BitBottleneck]]

    init(_ r: WeightReader, prefix p: String, config c: BitBackboneConfig, file: String) throws {
        config = c
        stemConv = try BitConv(r, "\(p).embedder.convolution", in: c.numChannels, out: c.embeddingSize, kernel: 7, stride: 2,
                               padding: c.globalPadding)
        stemNorm = try r.groupNorm("\(p).embedder.norm", channels: c.embeddingSize, groups: c.numGroups, eps: 1e-5)
        let strides = try c.stageStrides(file: file)
        var inChannels = c.embeddingSize
        var stages: [[BitBottleneck]] = []
        for (s, out) in c.stageChannels.enumerated() {
            stages.append(try (0..<c.depths[s]).map { l in
                try BitBottleneck(r, "\(p).encoder.stages.\(s).layers.\(l)", in: l == 0 ? inChannels : out, out: out,
                                  stride: l == 0 ? strides[s] : 1, first: l == 0, config: c)
            })
            inChannels = out
        }
        self.stages = stages
    }

    func callAsFunction(_ pixels: Tensor) throws -> [Tensor] {
        var x = try stemConv(pixels)
        // Not-"SAME" BiT pads the stem output by one before its norm (transformers' `BitEmbeddings.pad`).
        if config.globalPadding != .same { x = try x.dptPadded(.uniform(1)) }
        x = try stemNorm(x).dptReLU()
        if config.embeddingDynamicPadding {
            let (t, b) = BitConv.samePadding(x.shape[1], kernel: 3, stride: 2)
            let (l, r) = BitConv.samePadding(x.shape[2], kernel: 3, stride: 2)
            x = try x.dptPadded(ConvPadding(top: t, left: l, bottom: b, right: r), value: 0)
        }
        x = try x.dptMaxPool(kernel: 3, stride: 2)
        var maps = [x]
        let last = config.outIndices.max() ?? 0
        for stage in stages.prefix(last) {
            for layer in stage { x = try layer(x) }
            maps.append(x)
        }
        return config.outIndices.map { maps[$0] }
    }
}

/// A ViT encoder layer (`DPTViTLayer`): pre-norm self-attention and MLP, both residual.
struct DPTViTLayer {
    let normBefore: LayerNorm, normAfter: LayerNorm
    let query: Linear, key: Linear, value: Linear, attentionOut: Linear
    let intermediate: Linear, output: Linear
    let heads: Int
    let activation: Activation

    init(_ r: WeightReader, _ p: String, config c: DPTConfig) throws {
        let d = c.hiddenSize
        normBefore = try r.layerNorm("\(p).layernorm_before", channels: d, eps: c.layerNormEps)
        normAfter = try r.layerNorm("\(p).layernorm_after", channels: d, eps: c.layerNormEps)
        query = try r.linear("\(p).attention.attention.query", in: d, out: d, bias: c.qkvBias)
        key = try r.linear("\(p).attention.attention.key", in: d, out: d, bias: c.qkvBias)
        value = try r.linear("\(p).attention.attention.value", in: d, out: d, bias: c.qkvBias)
        attentionOut = try r.linear("\(p).attention.output.dense", in: d, out: d)
        intermediate = try r.linear("\(p).intermediate.dense", in: d, out: c.intermediateSize)
        output = try r.linear("\(p).output.dense", in: c.intermediateSize, out: d)
        heads = c.numAttentionHeads
        activation = c.hiddenAct
    }

    func callAsFunction(_ x: Tensor) throws -> Tensor {
        let h = try normBefore(x)
        let attended = try Attention.scaledDotProduct(query: query(h), key: key(h), value: value(h), heads: heads)
        let x1 = try attentionOut(attended, residual: x)
        return try output(intermediate(normAfter(x1), activation: activation), residual: x1)
    }
}

/// `DPTViTHybridEmbeddings` + the ViT encoder: BiT features, a 1x1 projection to tokens, the CLS token and
/// position embeddings, then the layers. Returns the two BiT maps for neck stages 0-1 and the token states
/// of the layers for stages 2-3.
struct DPTHybridEncoder {
    let config: DPTConfig
    let backbone: BitBackbone
    let projection: Linear
    let clsToken: Tensor
    let positionEmbeddings: Tensor
    let layers: [DPTViTLayer]

    init(_ r: WeightReader, config c: DPTConfig, file: String) throws {
        config = c
        backbone = try BitBackbone(r, prefix: "dpt.embeddings.backbone.bit", config: c.backbone, file: file)
        let d = c.hiddenSize, grid = c.imageSize / c.patchSize
        projection = try r.linear("dpt.embeddings.projection", in: c.backboneFeatmapShape[1], out: d)
        clsToken = try r.tensor("dpt.embeddings.cls_token", shape: [1, 1, d])
        positionEmbeddings = try r.tensor("dpt.embeddings.position_embeddings", shape: [1, grid * grid + 1, d])
        layers = try (0..<c.numHiddenLayers).map { try DPTViTLayer(r, "dpt.encoder.layer.\($0)", config: c) }
        // The final layer norm belongs to DPTModel but never reaches the depth head (the neck reads the
        // layers' raw outputs); it is read so that strict loading accounts for it.
        _ = try r.layerNorm("dpt.layernorm", channels: d, eps: c.layerNormEps)
    }

    func callAsFunction(_ pixels: Tensor) throws -> (maps: [Tensor], tokens: [Tensor]) {
        let c = config
        guard pixels.rank == 4, pixels.shape[3] == c.numChannels else {
            throw TensorError.shapeMismatch("DPT expects NHWC pixels with \(c.numChannels) channels, got \(pixels.shape)")
        }
        guard pixels.shape[1] == c.imageSize, pixels.shape[2] == c.imageSize else {
            throw TensorError.invalidArgument("DPT input is \(pixels.shape[1])x\(pixels.shape[2]); the model takes \(c.imageSize)x\(c.imageSize)")
        }
        let features = try backbone(pixels)
        let last = features[2]
        let (n, gh, gw) = (last.shape[0], last.shape[1], last.shape[2])
        let grid = c.imageSize / c.patchSize
        guard gh == grid, gw == grid else {
            throw TensorError.shapeMismatch("BiT gives a \(gh)x\(gw) map but the position embeddings are \(grid)x\(grid)")
        }
        let d = c.hiddenSize
        let patches = try projection(last).reshaped([n, gh * gw, d])
        var cls = Tensor(uninitializedShape: [n, 1, d])
        cls.withUnsafeMutableBufferPointer { p in
            for b in 0..<n { (p.baseAddress! + b * d).update(from: clsToken.unsafePointer, count: d) }
        }
        var x = try Tensor.concatenate([cls, patches], axis: 1) + positionEmbeddings
        let wanted = c.encoderFeatureLayers
        var tokens: [Tensor] = []
        // Layers after the last one the neck reads cannot change the depth, so they are not run.
        for (i, layer) in layers.enumerated().prefix((wanted.max() ?? -1) + 1) {
            x = try layer(x)
            if wanted.contains(i) { tokens.append(x) }
        }
        return ([features[0], features[1]], tokens)
    }
}
