#if canImport(CDNNL)
import CDNNL
#endif

/// Convolutions and linear layers built straight from a reader: from `PackedWeightCache` when it holds
/// the layer's packed weights, else from the source's values, borrowed where a layer keeps only its own
/// converted copy (no fp32 copy of each weight at load).
extension WeightReader {
    /// A convolution over the weight `name` of `shape` (`[out, in, kh, kw]`), in the reader's precision.
    public func convolution(weight name: String, shape: [Int], bias: Tensor?, stride: Int, padding: ConvPadding) throws -> Conv2D {
        let precision = precision
        // The convolution keeps only its own re-laid-out copy, in either precision.
        func build() throws -> Conv2D {
            try withTensor(name, shape: shape) { try Conv2D(weight: $0, bias: bias, stride: stride, padding: padding, precision: precision) }
        }
        #if canImport(CDNNL)
        guard let file = packedFile() else { return try build() }
        let conv: Conv2D
        let dims = Conv2D.packedShape(shape, stride: stride, padding: padding, precision: precision)
        if let cached = file.weights(name, dims: dims, type: precision == .bf16 ? dnnl_bf16 : dnnl_f32) {
            try markUsed(name, shape: shape)
            conv = try Conv2D(packed: cached, shape: shape, bias: bias, stride: stride, padding: padding, precision: precision)
        } else {
            conv = try build()
        }
        if let w = conv.packedWeights { file.record(name, w) }
        return conv
        #else
        return try build()
        #endif
    }

    /// A linear layer over the weight `name`: `[out, in]`, or a 1x1 convolution's `[out, in, 1, 1]` (the
    /// same map on NHWC data).
    public func linear(weight name: String, out o: Int, in i: Int, bias: Tensor?) throws -> Linear {
        let conv1x1 = source.shape(of: name) == [o, i, 1, 1]
        let shape = conv1x1 ? [o, i, 1, 1] : [o, i]
        let precision = precision
        // In fp32 the layer keeps the tensor itself, so it must be a copy; in bf16 only its converted copy.
        func build() throws -> Linear {
            let make = { (w: Tensor) in try Linear(weight: conv1x1 ? w.reshaped([o, i]) : w, bias: bias, precision: precision) }
            return precision == .bf16 ? try withTensor(name, shape: shape, make) : try make(try tensor(name, shape: shape))
        }
        #if canImport(CDNNL)
        guard precision == .bf16, let file = packedFile() else { return try build() }
        let layer: Linear
        if let cached = file.weights(name, dims: [i, o], type: dnnl_bf16) {
            try markUsed(name, shape: shape)
            layer = try Linear(packedBF16: cached, outFeatures: o, inFeatures: i, bias: bias)
        } else {
            layer = try build()
        }
        if let w = layer.packedWeights { file.record(name, w) }
        return layer
        #else
        return try build()
        #endif
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
