/// The `generator` argument of diffusers: one generator for the whole batch, or one per image.
///
/// With one generator, a batch is drawn in a single `torch.randn` call; with a list, diffusers'
/// `randn_tensor` draws each image's slice from its own generator and concatenates them.
public struct RandomGenerators: Sendable, Equatable {
    public private(set) var generators: [TorchGenerator]
    public let isPerImage: Bool

    /// One generator shared by the whole batch (`generator=torch.Generator().manual_seed(seed)`).
    public init(_ generator: TorchGenerator) {
        generators = [generator]
        isPerImage = false
    }

    public init(seed: UInt64) { self.init(TorchGenerator(seed: seed)) }

    /// One generator per image (`generator=[g0, g1, ...]`). A one-element list acts as a single
    /// generator, as in diffusers.
    public init(perImage generators: [TorchGenerator]) throws {
        guard !generators.isEmpty else {
            throw TensorError.invalidArgument("generator list is empty")
        }
        self.generators = generators
        isPerImage = generators.count > 1
    }

    /// `randn_tensor(shape, generator=...)` in torch element order (shape is torch's, e.g. NCHW).
    public mutating func randn(shape: [Int]) throws -> Tensor {
        guard isPerImage else { return try generators[0].randn(shape: shape) }
        guard let batch = shape.first, batch == generators.count else {
            throw TensorError.invalidArgument(
                "a list of \(generators.count) generators needs a batch of \(generators.count), got shape \(shape)")
        }
        let itemShape = [1] + shape.dropFirst()
        let itemCount = itemShape.reduce(1, *)
        var out = Tensor(uninitializedShape: shape)
        try out.withUnsafeMutableBufferPointer { dst in
            for i in 0..<batch {
                let part = try generators[i].randn(shape: itemShape)
                part.withUnsafeBufferPointer { src in
                    for k in 0..<itemCount { dst[i * itemCount + k] = src[k] }
                }
            }
        }
        return out
    }

    /// Draws like `randn_tensor((batch, channels, height, width), generator=...)` and returns NHWC.
    public mutating func randnNHWC(batch: Int, channels: Int, height: Int, width: Int) throws -> Tensor {
        nchwToNHWC(try randn(shape: [batch, channels, height, width]))
    }

    /// Noise shaped like an engine tensor: rank-4 tensors are NHWC latents, which torch would hold
    /// (and draw) as NCHW; other ranks are drawn in their own order.
    public mutating func randnLike(_ tensor: Tensor) throws -> Tensor {
        let s = tensor.shape
        if s.count == 4 { return try randnNHWC(batch: s[0], channels: s[3], height: s[1], width: s[2]) }
        return try randn(shape: s)
    }

    /// Draws from generator `index` alone, as diffusers does when it handles each image with its own
    /// generator (e.g. encoding images one by one in image-to-image).
    public mutating func randnNHWC(generatorIndex index: Int, batch: Int, channels: Int, height: Int, width: Int) throws -> Tensor {
        guard generators.indices.contains(index) else {
            throw TensorError.invalidArgument("generator \(index) requested from a list of \(generators.count)")
        }
        return nchwToNHWC(try generators[index].randn(shape: [batch, channels, height, width]))
    }
}
