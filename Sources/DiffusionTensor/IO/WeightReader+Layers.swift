#if canImport(CDNNL)
import CDNNL
#endif

/// Convolutions and linear layers built straight from a reader: from `PackedWeightCache` when it holds
/// the layer's packed weights, else from the source's values, borrowed where a layer keeps only its own
/// converted copy (no fp32 copy of each weight at load).
extension WeightReader {
    /// A convolution over the weight `name` of `shape` (`[out, in, kh, kw]`), in the reader's precision.
    public func convolution(weight name: String, shape: [Int], bias: Tensor?, stride: Int, padding: ConvPadding) throws -> Conv2D {
        #if canImport(CDNNL)
        if let file = packedFile() {
            let conv: Conv2D
            if let cached = file.weights(name, dims: shape, type: precision == .bf16 ? dnnl_bf16 : dnnl_f32) {
                try markUsed(name, shape: shape)
                conv = try Conv2D(packed: cached, shape: shape, bias: bias, stride: stride, padding: padding, precision: precision)
            } else {
                conv = try withTensor(name, shape: shape) {
                    try Conv2D(weight: $0, bias: bias, stride: stride, padding: padding, precision: precision)
                }
            }
            if let w = conv.packedWeights { file.record(name, w) }
            return conv
        }
        #endif
        // The convolution keeps only its own re-laid-out copy, in either precision.
        return try withTensor(name, shape: shape) { try Conv2D(weight: $0, bias: bias, stride: stride, padding: padding, precision: precision) }
    }

    /// A linear layer over the weight `name`: `[out, in]`, or a 1x1 convolution's `[out, in, 1, 1]` (the
    /// same map on NHWC data).
    public func linear(weight name: String, out o: Int, in i: Int, bias: Tensor?) throws -> Linear {
        let conv1x1 = source.shape(of: name) == [o, i, 1, 1]
        let shape = conv1x1 ? [o, i, 1, 1] : [o, i]
        let precision = precision
        func build(_ w: Tensor) throws -> Linear { try Linear(weight: conv1x1 ? w.reshaped([o, i]) : w, bias: bias, precision: precision) }
        #if canImport(CDNNL)
        if precision == .bf16, let file = packedFile() {
            let layer: Linear
            if let cached = file.weights(name, dims: [i, o], type: dnnl_bf16) {
                try markUsed(name, shape: shape)
                layer = try Linear(packedBF16: cached, outFeatures: o, inFeatures: i, bias: bias)
            } else {
                layer = try withTensor(name, shape: shape, build)
            }
            if let w = layer.packedWeights { file.record(name, w) }
            return layer
        }
        #endif
        // In fp32 the layer keeps the tensor itself, so it must be a copy; in bf16 only its converted copy.
        return precision == .bf16 ? try withTensor(name, shape: shape, build) : try build(try tensor(name, shape: shape))
    }

    #if canImport(CDNNL)
    /// The source's file in the cache: nil without a cache directory, for synthetic weights, or for a
    /// source without an identity (adapters merged in, tensors in memory).
    private func packedFile() -> PackedWeightFile? {
        if packedFileState.opened { return packedFileState.file }
        var file: PackedWeightFile?
        if !(source is any SyntheticTensorSource), let directory = PackedWeightCache.directory, let identity = source.cacheIdentity {
            file = PackedWeightFile(directory: directory, identity: identity, precision: precision)
        }
        packedFileState = (true, file)
        return file
    }
    #endif
}
