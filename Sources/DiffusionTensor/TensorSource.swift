/// Anything that serves named tensors: a safetensors file, a torch checkpoint, an in-memory dictionary.
/// Models load through this, so they do not care where weights come from.
public protocol TensorSource: Sendable {
    /// All tensor names, sorted.
    var tensorNames: [String] { get }
    /// Shape of a tensor without loading it; nil when absent.
    func shape(of name: String) -> [Int]?
    /// The tensor converted to fp32. Throws when absent or unreadable.
    func tensor(_ name: String) throws -> Tensor
    /// Where the tensors come from, for error messages (a path).
    var sourceDescription: String { get }
    /// Calls `body` with the tensor in fp32. A source whose file holds it as fp32 may hand over a tensor
    /// that borrows the file's memory instead of a copy: `body` must neither keep it nor write to it
    /// (a bf16 layer, which converts its weights and keeps only that copy, is the intended reader).
    func withTensor<R>(_ name: String, _ body: (Tensor) throws -> R) throws -> R
    /// What identifies these exact tensors across processes (the files, with size and modification time),
    /// for `PackedWeightCache`; nil when there is no such identity (tensors in memory, adapters merged in),
    /// and then nothing is cached.
    var cacheIdentity: String? { get }
}

extension TensorSource {
    /// A copy, as `tensor(_:)`.
    public func withTensor<R>(_ name: String, _ body: (Tensor) throws -> R) throws -> R { try body(try tensor(name)) }
    public var cacheIdentity: String? { nil }
}

/// In-memory tensors by name (tests, converted checkpoints).
public struct TensorDictionary: TensorSource {
    public var tensors: [String: Tensor]
    public var sourceDescription: String

    public init(_ tensors: [String: Tensor], description: String = "in-memory tensors") {
        self.tensors = tensors
        self.sourceDescription = description
    }

    public var tensorNames: [String] { tensors.keys.sorted() }
    public func shape(of name: String) -> [Int]? { tensors[name]?.shape }
    public func tensor(_ name: String) throws -> Tensor {
        guard let t = tensors[name] else { throw TensorError.badFile(file: sourceDescription, detail: "tensor \(name) missing") }
        return t
    }
}

/// A source that makes tensors on demand in whatever shape the model asks for (benchmarks of the real
/// architectures with random weights, where no file exists).
public protocol SyntheticTensorSource: TensorSource {
    func makeTensor(_ name: String, shape: [Int]) -> Tensor
}

/// Deterministic pseudo-random weights, uniform in [-scale, scale]; norms' scales come out small but
/// non-zero, which keeps activations finite for timing runs.
public struct RandomTensorSource: SyntheticTensorSource {
    public let seed: UInt64
    public let scale: Float
    public init(seed: UInt64 = 0, scale: Float = 0.02) { self.seed = seed; self.scale = scale }
    public var tensorNames: [String] { [] }
    public var sourceDescription: String { "random weights (seed \(seed))" }
    public func shape(of name: String) -> [Int]? { nil }
    public func tensor(_ name: String) throws -> Tensor {
        throw TensorError.invalidArgument("random weights have no fixed shape; \(name) must be requested with a shape")
    }
    public func makeTensor(_ name: String, shape: [Int]) -> Tensor {
        var t = Tensor(uninitializedShape: shape)
        // FNV-1a of the name (String.hashValue is seeded per process, so not reproducible).
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in name.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        var state = (seed ^ h) | 1
        let s = scale
        t.withUnsafeMutableBufferPointer { p in
            for i in 0..<p.count {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                p[i] = (Float(state >> 40) * (1 / Float(1 << 24)) * 2 - 1) * s
            }
        }
        return t
    }
}

/// Hands out a model's weights by name, checking shapes, and remembers which names were used so the
/// loader can report missing and unexpected keys (like torch's `load_state_dict(strict=True)`).
public final class WeightReader: @unchecked Sendable {
    public let source: any TensorSource
    /// What the convolutions and linear layers built from these weights compute in (the model decides).
    public let precision: ComputePrecision
    private var used = Set<String>()
    public private(set) var missing: [String] = []
    #if canImport(CDNNL)
    /// The source's file in `PackedWeightCache`, opened by the first layer that asks (see `WeightReader+Layers`).
    var packedFileState: (opened: Bool, file: PackedWeightFile?) = (false, nil)
    #endif

    public init(_ source: any TensorSource, precision: ComputePrecision = .fp32) {
        self.source = source
        self.precision = precision
    }

    /// The tensor `name`, which must have `shape` when given.
    public func tensor(_ name: String, shape expected: [Int]? = nil) throws -> Tensor {
        if let synthetic = source as? any SyntheticTensorSource, let expected {
            used.insert(name)
            return synthetic.makeTensor(name, shape: expected)
        }
        try markUsed(name, shape: expected)
        return try source.tensor(name)
    }

    /// Throws when `name` is missing or not of `expected` shape; else records it as used.
    func markUsed(_ name: String, shape expected: [Int]?) throws {
        guard let shape = source.shape(of: name) else {
            missing.append(name)
            throw TensorError.badFile(file: source.sourceDescription, detail: "missing tensor \(name)")
        }
        if let expected, shape != expected {
            throw TensorError.badFile(file: source.sourceDescription, detail: "tensor \(name) has shape \(shape), expected \(expected)")
        }
        used.insert(name)
    }

    /// `body` with the tensor `name` of `shape`, which may borrow the file's memory (`TensorSource.withTensor`):
    /// for layers that keep only a converted copy of their weights.
    public func withTensor<R>(_ name: String, shape expected: [Int], _ body: (Tensor) throws -> R) throws -> R {
        if source is any SyntheticTensorSource { return try body(try tensor(name, shape: expected)) }
        try markUsed(name, shape: expected)
        return try source.withTensor(name, body)
    }

    /// The tensor `name` if present (optional parameters such as a bias), else nil.
    public func optionalTensor(_ name: String, shape expected: [Int]? = nil) throws -> Tensor? {
        guard source.shape(of: name) != nil else { return nil }
        return try tensor(name, shape: expected)
    }

    /// Whether `name` exists (used to pick between alternative naming conventions).
    public func contains(_ name: String) -> Bool { source.shape(of: name) != nil }

    /// Names in the source that no `tensor` call consumed.
    public var unexpected: [String] { source.tensorNames.filter { !used.contains($0) } }

    /// Called by a model once built: writes the packed weights `PackedWeightCache` lacked, then releases
    /// the buffers loading freed (`releaseConversionBuffers`).
    public func finishLoading() {
        #if canImport(CDNNL)
        if packedFileState.opened { packedFileState.file?.finish() }
        #endif
        releaseConversionBuffers()
    }

    /// The buffers freed while loading (in bf16, the fp32 weights it converted) went to the buffer pool,
    /// where no activation will reuse them.
    public func releaseConversionBuffers() {
        TensorStorage.releaseCachedBuffers()
    }

    /// Throws when some tensors in the source were never used (strict loading).
    public func requireAllUsed(ignoring ignoredPrefixes: [String] = []) throws {
        let extra = unexpected.filter { name in !ignoredPrefixes.contains { name.hasPrefix($0) } }
        guard extra.isEmpty else {
            let list = extra.prefix(10).joined(separator: ", ")
            throw TensorError.badFile(file: source.sourceDescription, detail: "\(extra.count) unexpected tensor(s): \(list)\(extra.count > 10 ? ", ..." : "")")
        }
    }
}
