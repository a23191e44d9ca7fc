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
        return try throughCache(file, name, shape: shape, dims: Conv2D.packedShape(shape, stride: stride, padding: padding, precision: precision),
                                type: precision == .bf16 ? dnnl_bf16 : dnnl_f32, build: build, packed: \.packedWeights) {
            try Conv2D(packed: $0, shape: shape, bias: bias, stride: stride, padding: padding, precision: precision)
        }
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
        return try throughCache(file, name, shape: shape, dims: [i, o], type: dnnl_bf16, build: build, packed: \.packedWeights) {
            try Linear(packedBF16: $0, outFeatures: o, inFeatures: i, bias: bias)
        }
        #else
        return try build()
        #endif
    }

    #if canImport(CDNNL)
    /// A layer from the cache file's weights `name` (packed as `dims` of `type`) when it holds them, else built
    /// from the source; either way its packed weights are recorded for the file.
    private func throughCache<Layer>(_ file: PackedWeightFile, _ name: String, shape: [Int], dims: [Int], type: dnnl_data_type_t,
                                     build: () throws -> Layer, packed: (Layer) -> OneDNNWeights?,
                                     fromCache: (OneDNNWeights) throws -> Layer) throws -> Layer {
        let layer: Layer
        if let cached = file.weights(name, dims: dims, type: type) {
            try markUsed(name, shape: shape)
            layer = try fromCache(cached)
        } else {
            layer = try build()
        }
        if let w = packed(layer) { file.record(name, w) }
        return layer
    }

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
