/// A fully connected layer `y = activation(x W^T + b)` over the last dimension.
///
/// In fp32 the weight is kept as torch stores it (`[out, in]`); the GEMM reads it transposed, so no copy
/// is made. In bf16 it is kept only as bf16, in the layout oneDNN's bf16 matmul prefers; the input is
/// rounded to bf16 per call and the product accumulates and lands in fp32.
public final class Linear: @unchecked Sendable {
    public let inFeatures: Int
    public let outFeatures: Int
    public let precision: ComputePrecision
    /// The fp32 weight; nil in bf16.
    private let weight: TensorStorage?
    private let bias: TensorStorage?
    #if canImport(CDNNL)
    private let bf16: OneDNNMatmulBF16?
    #endif

    /// - Parameter precision: `bf16` needs oneDNN and a CPU with AVX512_BF16 or AMX (see `ComputePrecision`).
    public init(weight: Tensor, bias: Tensor?, precision: ComputePrecision = .fp32) throws {
        guard weight.rank == 2 else { throw TensorError.shapeMismatch("linear weight must be [out, in], got \(weight.shape)") }
        outFeatures = weight.shape[0]
        inFeatures = weight.shape[1]
        if let bias {
            guard bias.shape == [outFeatures] else {
                throw TensorError.shapeMismatch("linear bias must be [\(outFeatures)], got \(bias.shape)")
            }
            self.bias = bias.storage
        } else {
            self.bias = nil
        }
        self.precision = precision
        try precision.checkSupported()
        #if canImport(CDNNL)
        if precision == .bf16 {
            self.weight = nil
            bf16 = try OneDNNMatmulBF16(weight: weight.unsafePointer, outFeatures: outFeatures, inFeatures: inFeatures, bias: self.bias)
            return
        }
        bf16 = nil
        #endif
        self.weight = weight.storage  // shared, not copied
    }

    #if canImport(CDNNL)
    /// A bf16 layer over weights already in a oneDNN bf16 layout of `[in, out]` (from `PackedWeightCache`).
    init(packedBF16 weights: OneDNNWeights, outFeatures: Int, inFeatures: Int, bias: Tensor?) throws {
        try ComputePrecision.bf16.checkSupported()
        if let bias, bias.shape != [outFeatures] {
            throw TensorError.shapeMismatch("linear bias must be [\(outFeatures)], got \(bias.shape)")
        }
        self.outFeatures = outFeatures
        self.inFeatures = inFeatures
        self.bias = bias?.storage
        precision = .bf16
        weight = nil
        bf16 = try OneDNNMatmulBF16(packed: weights, outFeatures: outFeatures, inFeatures: inFeatures, bias: self.bias)
    }

    /// The bf16 weights as the layer holds them (for `PackedWeightCache`); nil in fp32.
    var packedWeights: OneDNNWeights? { bf16?.packedWeights }
    #endif

    /// How many calls had to move the bf16 weights to another layout since loading (0 while the layout
    /// chosen at load fits; always 0 in fp32, whose weights stay as loaded). For diagnostics and tests.
    public var weightRelayouts: Int {
        #if canImport(CDNNL)
        return bf16?.weightRelayouts ?? 0
        #else
        return 0
        #endif
    }

    /// Checks an input shape and the residual; the output buffer (the residual, when given) and the row count.
    private func output(for shape: [Int], residual: Tensor?) throws -> (Tensor, rows: Int) {
        guard shape.count >= 1, shape[shape.count - 1] == inFeatures else {
            throw TensorError.shapeMismatch("linear expects last dimension \(inFeatures), got \(shape)")
        }
        let rows = shape.reduce(1, *) / max(inFeatures, 1)
        var outShape = shape
        outShape[outShape.count - 1] = outFeatures
        if let residual, residual.shape != outShape {
            throw TensorError.shapeMismatch("linear residual must be \(outShape), got \(residual.shape)")
        }
        FlopCounter.add(2 * Double(rows) * Double(inFeatures * outFeatures))
        return (residual ?? Tensor(uninitializedShape: outShape), rows)
    }

    /// The layer on an input as its producer wrote it: a bf16 input goes to the bf16 GEMM as it is (a bf16
    /// layer only; an fp32 layer refuses it).
    public func callAsFunction(_ x: LayerInput, residual: Tensor? = nil, activation: Activation = .identity) throws -> Tensor {
        switch x {
        case .fp32(let t): return try self(t, residual: residual, activation: activation)
        case .bf16(let t):
            #if canImport(CDNNL)
            if let bf16 {
                var (out, rows) = try output(for: t.shape, residual: residual)
                try withExtendedLifetime(t.buffer) {
                    try out.withUnsafeMutableBufferPointer { ob in
                        try bf16.run(bf16Input: t.buffer.pointer, rows: rows, into: ob.baseAddress!, accumulate: residual != nil)
                        activation.apply(inPlace: ob.baseAddress!, count: ob.count)
                    }
                }
                return out
            }
            #endif
            throw TensorError.invalidArgument("linear: a bf16 input needs a layer in bf16 precision, this one is fp32")
        }
    }

    /// Applies the layer to `[..., in]`, returning `[..., out]`. A residual of the output's shape is added
    /// before the activation (it seeds the GEMM's accumulator, so the addition is free).
    public func callAsFunction(_ x: Tensor, residual: Tensor? = nil, activation: Activation = .identity) throws -> Tensor {
        var (out, rows) = try output(for: x.shape, residual: residual)
        let o = outFeatures
        #if canImport(CDNNL)
        if let bf16 {
            try out.withUnsafeMutableBufferPointer { ob in
                try bf16.run(x.unsafePointer, rows: rows, into: ob.baseAddress!, accumulate: residual != nil)
                activation.apply(inPlace: ob.baseAddress!, count: rows * o)
            }
            return out
        }
        #endif
        guard let weight else { throw TensorError.backend("linear: no weights for precision \(precision)") }
        out.withUnsafeMutableBufferPointer { ob in
            let y = ob.baseAddress!
            var beta: Float = residual == nil ? 0 : 1
            if let bias {
                // Seed every row with the bias (added to the residual when present).
                let b = bias.pointer
                let hasResidual = residual != nil
                Parallel.forRanges(rows, minChunk: 64) { r in
                    for i in r {
                        let row = y + i * o
                        if hasResidual { for j in 0..<o { row[j] += b[j] } } else { row.update(from: b, count: o) }
                    }
                }
                beta = 1
            }
            Gemm.sgemm(transposeA: false, transposeB: true, m: rows, n: o, k: inFeatures,
                       a: x.unsafePointer, lda: inFeatures, b: weight.pointer, ldb: inFeatures,
                       beta: beta, c: y, ldc: o)
            activation.apply(inPlace: y, count: rows * o)
        }
        return out
    }
}

extension Tensor {
    /// Batched matrix product over the last two dimensions: `[..., m, k] x [..., k, n] -> [..., m, n]`,
    /// with optional transposes of either operand's last two dimensions. Batch dimensions must match
    /// exactly, or `other` may be a single 2-D matrix shared by every batch.
    public func matmul(_ other: Tensor, transposeSelf: Bool = false, transposeOther: Bool = false) throws -> Tensor {
        guard rank >= 2, other.rank >= 2 else {
            throw TensorError.shapeMismatch("matmul needs rank >= 2 operands, got \(shape) and \(other.shape)")
        }
        let (ar, ac) = (shape[rank - 2], shape[rank - 1])
        let (br, bc) = (other.shape[other.rank - 2], other.shape[other.rank - 1])
        let (m, k) = transposeSelf ? (ac, ar) : (ar, ac)
        let (k2, n) = transposeOther ? (bc, br) : (br, bc)
        guard k == k2 else { throw TensorError.shapeMismatch("matmul inner dimensions differ: \(shape) x \(other.shape)") }
        let batchShape = Array(shape.dropLast(2))
        let otherBatch = Array(other.shape.dropLast(2))
        guard otherBatch == batchShape || otherBatch.isEmpty else {
            throw TensorError.shapeMismatch("matmul batch dimensions differ: \(shape) x \(other.shape)")
        }
        let batches = batchShape.reduce(1, *)
        FlopCounter.add(2 * Double(batches) * Double(m * n * k))
        var out = Tensor(uninitializedShape: batchShape + [m, n])
        let a = unsafePointer, b = other.unsafePointer
        let bStride = otherBatch.isEmpty ? 0 : br * bc
        out.withUnsafeMutableBufferPointer { ob in
            for i in 0..<batches {
                Gemm.sgemm(transposeA: transposeSelf, transposeB: transposeOther, m: m, n: n, k: k,
                           a: a + i * ar * ac, lda: ac, b: b + i * bStride, ldb: bc,
                           c: ob.baseAddress! + i * m * n, ldc: n)
            }
        }
        return out
    }
}
