/// Element-wise arithmetic with numpy/torch broadcasting.
extension Tensor {
    /// The broadcast shape of two shapes (aligned from the right; a dimension of 1 stretches).
    public static func broadcastShape(_ a: [Int], _ b: [Int]) throws -> [Int] {
        let r = max(a.count, b.count)
        var out = [Int](repeating: 1, count: r)
        for i in 0..<r {
            let da = i < r - a.count ? 1 : a[i - (r - a.count)]
            let db = i < r - b.count ? 1 : b[i - (r - b.count)]
            guard da == db || da == 1 || db == 1 else {
                throw TensorError.shapeMismatch("cannot broadcast \(a) with \(b)")
            }
            out[i] = da == 1 ? db : da
        }
        return out
    }

    /// Strides of `shape` viewed inside `target` (0 where broadcast).
    private static func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
        let r = target.count
        var strides = [Int](repeating: 0, count: r)
        var s = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            let ti = i + (r - shape.count)
            strides[ti] = shape[i] == 1 ? 0 : s
            s *= shape[i]
        }
        return strides
    }

    @inline(__always)
    private func binary(_ other: Tensor, _ op: (Float, Float) -> Float) throws -> Tensor {
        if shape == other.shape {
            var out = Tensor(uninitializedShape: shape)
            let a = unsafePointer, b = other.unsafePointer
            let n = count
            out.withUnsafeMutableBufferPointer { ob in
                let y = ob.baseAddress!
                Parallel.forRanges(n, minChunk: 1 << 15) { r in for i in r { y[i] = op(a[i], b[i]) } }
            }
            return out
        }
        let outShape = try Tensor.broadcastShape(shape, other.shape)
        let sa = Tensor.broadcastStrides(shape, to: outShape)
        let sb = Tensor.broadcastStrides(other.shape, to: outShape)
        var out = Tensor(uninitializedShape: outShape)
        let inner = outShape.last ?? 1
        let outer = out.count / max(inner, 1)
        let ia = sa.last ?? 0, ib = sb.last ?? 0
        let a = unsafePointer, b = other.unsafePointer
        out.withUnsafeMutableBufferPointer { ob in
            let y = ob.baseAddress!
            Parallel.forRanges(outer, minChunk: 64) { rows in
                for row in rows {
                    // Offsets of this row in each operand, from its multi-index over the leading dims.
                    var rem = row, oa = 0, obb = 0
                    for d in stride(from: outShape.count - 2, through: 0, by: -1) {
                        let idx = rem % outShape[d]
                        rem /= outShape[d]
                        oa += idx * sa[d]; obb += idx * sb[d]
                    }
                    let yr = y + row * inner
                    for j in 0..<inner { yr[j] = op(a[oa + j * ia], b[obb + j * ib]) }
                }
            }
        }
        return out
    }

    public func adding(_ other: Tensor) throws -> Tensor { try binary(other, +) }
    public func subtracting(_ other: Tensor) throws -> Tensor { try binary(other, -) }
    public func multiplying(_ other: Tensor) throws -> Tensor { try binary(other, *) }
    public func dividing(_ other: Tensor) throws -> Tensor { try binary(other, /) }

    /// `self * scale + offset`, element-wise.
    public func scaled(by scale: Float, adding offset: Float = 0) -> Tensor {
        var out = Tensor(uninitializedShape: shape)
        let a = unsafePointer
        let n = count
        out.withUnsafeMutableBufferPointer { ob in
            let y = ob.baseAddress!
            Parallel.forRanges(n, minChunk: 1 << 15) { r in for i in r { y[i] = a[i] * scale + offset } }
        }
        return out
    }

    public static func + (a: Tensor, b: Tensor) throws -> Tensor { try a.adding(b) }
    public static func - (a: Tensor, b: Tensor) throws -> Tensor { try a.subtracting(b) }
    public static func * (a: Tensor, b: Tensor) throws -> Tensor { try a.multiplying(b) }
    public static func / (a: Tensor, b: Tensor) throws -> Tensor { try a.dividing(b) }
    public static func * (a: Tensor, s: Float) -> Tensor { a.scaled(by: s) }
    public static func + (a: Tensor, s: Float) -> Tensor { a.scaled(by: 1, adding: s) }
}
