import DiffusionTensor

/// Group normalisation parameters (`torch.nn.GroupNorm`).
struct GroupNorm {
    let gamma: Tensor, beta: Tensor, groups: Int, eps: Float
    func callAsFunction(_ x: Tensor, activation: Activation = .identity) throws -> Tensor {
        try x.groupNorm(groups: groups, gamma: gamma, beta: beta, eps: eps, activation: activation)
    }

    /// `conv(self(x, activation), residual:)`. A bf16 convolution gets the normalised values written
    /// straight to bf16, the values it would round them to, without the fp32 tensor between.
    func then(_ conv: Conv2D, _ x: Tensor, activation: Activation = .identity, residual: consuming Tensor? = nil) throws -> Tensor {
        guard conv.precision == .bf16 else { return try conv(try self(x, activation: activation), residual: consume residual) }
        let normalized = try x.groupNormBF16(groups: groups, gamma: gamma, beta: beta, eps: eps, activation: activation)
        return try conv(normalized, residual: consume residual)
    }

    /// The normalised `x` as `layer` takes it (written straight to bf16 for a bf16 layer), as `shape`.
    func input(_ x: Tensor, for layer: Linear, shape: [Int]) throws -> LayerInput {
        guard layer.precision == .bf16 else { return .fp32(try self(x).reshaped(shape)) }
        return .bf16(try x.groupNormBF16(groups: groups, gamma: gamma, beta: beta, eps: eps).reshaped(shape))
    }
}

/// Layer normalisation parameters (`torch.nn.LayerNorm` over the last dimension).
struct LayerNorm {
    let gamma: Tensor, beta: Tensor, eps: Float
    func callAsFunction(_ x: Tensor) throws -> Tensor { try x.layerNorm(gamma: gamma, beta: beta, eps: eps) }

    /// The normalised `x` as `layer` takes it: written straight to bf16 for a bf16 layer.
    func input(_ x: Tensor, for layer: Linear) throws -> LayerInput {
        layer.precision == .bf16 ? .bf16(try x.layerNormBF16(gamma: gamma, beta: beta, eps: eps)) : .fp32(try self(x))
    }
}

/// Builders for layers from diffusers/transformers weight names (`prefix.weight`, `prefix.bias`), in the
/// reader's precision.
extension WeightReader {
    func conv2d(_ prefix: String, in i: Int, out o: Int, kernel k: Int, stride: Int = 1,
                padding: ConvPadding? = nil, bias: Bool = true) throws -> Conv2D {
        let b = bias ? try tensor("\(prefix).bias", shape: [o]) : nil
        return try convolution(weight: "\(prefix).weight", shape: [o, i, k, k], bias: b, stride: stride,
                               padding: padding ?? .uniform((k - 1) / 2))
    }

    /// A linear layer; also accepts a 1x1 convolution's `[out, in, 1, 1]` weight (the same map on NHWC data).
    func linear(_ prefix: String, in i: Int, out o: Int, bias: Bool = true) throws -> Linear {
        let b = bias ? try tensor("\(prefix).bias", shape: [o]) : nil
        return try linear(weight: "\(prefix).weight", out: o, in: i, bias: b)
    }

    func groupNorm(_ prefix: String, channels c: Int, groups: Int, eps: Float) throws -> GroupNorm {
        guard groups > 0, c % groups == 0 else {
            throw TensorError.invalidArgument("\(prefix): \(c) channels are not divisible into \(groups) groups")
        }
        return GroupNorm(gamma: try tensor("\(prefix).weight", shape: [c]), beta: try tensor("\(prefix).bias", shape: [c]),
                         groups: groups, eps: eps)
    }

    func layerNorm(_ prefix: String, channels c: Int, eps: Float) throws -> LayerNorm {
        LayerNorm(gamma: try tensor("\(prefix).weight", shape: [c]), beta: try tensor("\(prefix).bias", shape: [c]), eps: eps)
    }

    func shape(of name: String) -> [Int]? { source.shape(of: name) }
}
