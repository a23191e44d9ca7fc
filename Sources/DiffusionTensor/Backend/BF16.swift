import CKernels

/// A bf16 array: each value is the upper 16 bits of an fp32 pattern. Held in a `TensorStorage` of half
/// as many floats, so it is 64-byte aligned and large ones come from the same buffer pool.
final class BF16Buffer: @unchecked Sendable {
    let count: Int
    /// The bytes, as a storage oneDNN weights can take over.
    let storage: TensorStorage
    var pointer: UnsafeMutablePointer<UInt16> { UnsafeMutableRawPointer(storage.pointer).assumingMemoryBound(to: UInt16.self) }

    init(count: Int) {
        self.count = count
        storage = TensorStorage(count: (count + 1) / 2)
    }

    /// `src` rounded to bf16 (nearest, ties to even), converted in parallel chunks.
    convenience init(converting src: UnsafePointer<Float>, count: Int) {
        self.init(count: count)
        let dst = pointer
        // 64 Ki values per chunk: the conversion is memory-bound, so only large layers gain from threads.
        Parallel.forRanges(count, minChunk: 1 << 16) { r in
            sdk_f32_to_bf16(src + r.lowerBound, dst + r.lowerBound, Int64(r.count))
        }
    }
}

extension BF16Buffer {
    /// Rows `rows` of `width` values (rows counted from the buffer's start) written by `fill(first, count, block)`
    /// in fp32 into a block small enough to stay in cache, then rounded into this buffer: an op's bf16 output
    /// without the fp32 tensor in between.
    func writeRows(_ rows: Range<Int>, width: Int, _ fill: (_ first: Int, _ count: Int, _ block: UnsafeMutablePointer<Float>) -> Void) {
        let blockRows = max(1, 16_384 / max(width, 1))
        let y = pointer
        withUnsafeTemporaryAllocation(of: Float.self, capacity: blockRows * width) { block in
            let tmp = block.baseAddress!
            for first in stride(from: rows.lowerBound, to: rows.upperBound, by: blockRows) {
                let n = min(blockRows, rows.upperBound - first)
                fill(first, n, tmp)
                sdk_f32_to_bf16(tmp, y + first * width, Int64(n * width))
            }
        }
    }
}

/// A tensor held in bf16, as a bf16 layer takes its input (`groupNormBF16` writes one, a bf16
/// `Conv2D` reads it without another rounding pass).
public struct BF16Tensor: @unchecked Sendable {
    public let shape: [Int]
    let buffer: BF16Buffer
    public var count: Int { buffer.count }

    init(shape: [Int], buffer: BF16Buffer) {
        precondition(shape.reduce(1, *) == buffer.count, "bf16 tensor shape \(shape) does not match \(buffer.count) values")
        self.shape = shape
        self.buffer = buffer
    }

    /// `tensor` rounded to bf16 (nearest, ties to even), as a bf16 layer rounds its input.
    public init(rounding tensor: Tensor) {
        self.init(shape: tensor.shape, buffer: BF16Buffer(converting: tensor.unsafePointer, count: tensor.count))
    }

    /// The same values under another shape of the same count.
    public func reshaped(_ newShape: [Int]) throws -> BF16Tensor {
        guard newShape.reduce(1, *) == count, newShape.allSatisfy({ $0 >= 0 }) else {
            throw TensorError.shapeMismatch("cannot reshape bf16 \(shape) to \(newShape)")
        }
        return BF16Tensor(shape: newShape, buffer: buffer)
    }

    /// The values widened to fp32 (exact).
    public func widened() -> Tensor {
        var out = Tensor(uninitializedShape: shape)
        let b = buffer.pointer
        out.withUnsafeMutableBufferPointer { o in for i in 0..<o.count { o[i] = BF16.float(b[i]) } }
        return out
    }
}

/// A layer's input as its producer wrote it: fp32, or already rounded to bf16 for a bf16 layer (a norm or an
/// activation writing bf16 spares the layer its own rounding pass, and several layers reading one input share it).
public enum LayerInput: @unchecked Sendable {
    case fp32(Tensor)
    case bf16(BF16Tensor)

    public var shape: [Int] {
        switch self {
        case .fp32(let t): return t.shape
        case .bf16(let t): return t.shape
        }
    }

    /// `x` as a layer of `precision` takes it: rounded once to bf16 for a bf16 layer.
    public init(_ x: Tensor, for precision: ComputePrecision) {
        self = precision == .bf16 ? .bf16(BF16Tensor(rounding: x)) : .fp32(x)
    }
}

/// bf16 rounding as the bf16 layers apply it, for checks and tests.
public enum BF16 {
    /// `values` rounded to bf16 and widened back to fp32 (what a bf16 layer actually multiplies).
    public static func rounded(_ values: [Float]) -> [Float] {
        bits(values).map(float)
    }

    /// The bf16 patterns of `values` (nearest, ties to even; the AVX512_BF16 instruction where the CPU has it).
    public static func bits(_ values: [Float], portable: Bool = false) -> [UInt16] {
        var out = [UInt16](repeating: 0, count: values.count)
        values.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                guard let src = s.baseAddress, let dst = d.baseAddress else { return }
                if portable {
                    sdk_f32_to_bf16_portable(src, dst, Int64(values.count))
                } else {
                    sdk_f32_to_bf16(src, dst, Int64(values.count))
                }
            }
        }
        return out
    }

    /// A bf16 pattern as fp32 (exact).
    public static func float(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }
}

extension Tensor {
    /// This tensor with every value rounded to bf16 (kept in fp32): a bf16 layer's exact input.
    public func roundedToBF16() -> Tensor {
        BF16Tensor(rounding: self).widened()
    }
}
