/// Copies that change layout: concatenation, slicing, permutation.
extension Tensor {
    private func checkAxis(_ axis: Int, _ op: String) throws -> Int {
        let a = axis < 0 ? axis + rank : axis
        guard a >= 0, a < rank else { throw TensorError.invalidArgument("\(op): axis \(axis) out of range for \(shape)") }
        return a
    }

    /// Concatenates tensors along `axis`; all other dimensions must agree.
    public static func concatenate(_ tensors: [Tensor], axis: Int) throws -> Tensor {
        guard let first = tensors.first else { throw TensorError.invalidArgument("concatenate of no tensors") }
        let ax = try first.checkAxis(axis, "concatenate")
        for t in tensors {
            guard t.rank == first.rank,
                  t.shape.enumerated().allSatisfy({ $0.offset == ax || $0.element == first.shape[$0.offset] }) else {
                throw TensorError.shapeMismatch("concatenate along \(axis): \(t.shape) does not fit \(first.shape)")
            }
        }
        var outShape = first.shape
        outShape[ax] = tensors.reduce(0) { $0 + $1.shape[ax] }
        let outer = first.shape[..<ax].reduce(1, *)
        let inner = first.shape[(ax + 1)...].reduce(1, *)
        var out = Tensor(uninitializedShape: outShape)
        let rowOut = outShape[ax] * inner
        out.withUnsafeMutableBufferPointer { ob in
            let y = ob.baseAddress!
            var offset = 0
            for t in tensors {
                let chunk = t.shape[ax] * inner
                let src = t.unsafePointer
                let off = offset
                Parallel.forRanges(outer, minChunk: 16) { r in
                    for o in r { (y + o * rowOut + off).update(from: src + o * chunk, count: chunk) }
                }
                offset += chunk
            }
        }
        return out
    }

    /// Elements `range` along `axis` (a copy).
    public func slice(axis: Int, _ range: Range<Int>) throws -> Tensor {
        let ax = try checkAxis(axis, "slice")
        guard range.lowerBound >= 0, range.upperBound <= shape[ax] else {
            throw TensorError.invalidArgument("slice \(range) out of bounds for dimension \(ax) of \(shape)")
        }
        var outShape = shape
        outShape[ax] = range.count
        let outer = shape[..<ax].reduce(1, *)
        let inner = shape[(ax + 1)...].reduce(1, *)
        let rowIn = shape[ax] * inner, chunk = range.count * inner
        var out = Tensor(uninitializedShape: outShape)
        let src = unsafePointer
        out.withUnsafeMutableBufferPointer { ob in
            let y = ob.baseAddress!
            Parallel.forRanges(outer, minChunk: 16) { r in
                for o in r { (y + o * chunk).update(from: src + o * rowIn + range.lowerBound * inner, count: chunk) }
            }
        }
        return out
    }

    /// Splits into `parts` equal chunks along `axis` (torch `chunk`).
    public func chunked(_ parts: Int, axis: Int) throws -> [Tensor] {
        let ax = try checkAxis(axis, "chunk")
        guard parts > 0, shape[ax] % parts == 0 else {
            throw TensorError.invalidArgument("cannot split dimension \(ax) of \(shape) into \(parts) equal parts")
        }
        let size = shape[ax] / parts
        return try (0..<parts).map { try slice(axis: ax, $0 * size..<($0 + 1) * size) }
    }

    /// Reorders dimensions: output dimension `i` is input dimension `order[i]` (torch `permute`).
    public func permuted(_ order: [Int]) throws -> Tensor {
        guard order.count == rank, Set(order) == Set(0..<rank) else {
            throw TensorError.invalidArgument("permutation \(order) does not fit rank \(rank)")
        }
        let outShape = order.map { shape[$0] }
        var inStrides = [Int](repeating: 1, count: rank)
        for i in stride(from: rank - 2, through: 0, by: -1) { inStrides[i] = inStrides[i + 1] * shape[i + 1] }
        let strides = order.map { inStrides[$0] }
        var out = Tensor(uninitializedShape: outShape)
        let inner = outShape.last ?? 1, innerStride = strides.last ?? 1
        let outer = count / max(inner, 1)
        let src = unsafePointer
        out.withUnsafeMutableBufferPointer { ob in
            let y = ob.baseAddress!
            Parallel.forRanges(outer, minChunk: 64) { rows in
                for row in rows {
                    var rem = row, off = 0
                    for d in stride(from: rank - 2, through: 0, by: -1) {
                        off += (rem % outShape[d]) * strides[d]
                        rem /= outShape[d]
                    }
                    let yr = y + row * inner
                    for j in 0..<inner { yr[j] = src[off + j * innerStride] }
                }
            }
        }
        return out
    }

    /// NCHW -> NHWC.
    public func nchwToNHWC() throws -> Tensor { try permuted([0, 2, 3, 1]) }
    /// NHWC -> NCHW.
    public func nhwcToNCHW() throws -> Tensor { try permuted([0, 3, 1, 2]) }
}
