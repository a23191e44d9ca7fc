#if canImport(CKernels)
import CKernels
#endif

/// Storage element types found in model files. Compute is always fp32; half types are converted at load.
public enum DType: String, Sendable, CaseIterable {
    case float32 = "F32"
    case float16 = "F16"
    case bfloat16 = "BF16"

    public var byteSize: Int {
        switch self {
        case .float32: return 4
        case .float16, .bfloat16: return 2
        }
    }
}

/// Bit-exact conversions between IEEE half / bfloat16 and Float. Written out (rather than using
/// `Float16`) because `Float16` is unavailable on macOS x86_64 and the package must build there.
public enum HalfConversion {
    @inline(__always)
    public static func float(fromHalf h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = UInt32(h >> 10) & 0x1F
        var mant = UInt32(h & 0x3FF)
        if exp == 0 {
            if mant == 0 { return Float(bitPattern: sign) }
            // Subnormal half: normalise into a float.
            var e: UInt32 = 127 - 15 + 1
            while mant & 0x400 == 0 { mant <<= 1; e -= 1 }
            mant &= 0x3FF
            return Float(bitPattern: sign | (e << 23) | (mant << 13))
        }
        if exp == 0x1F { return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13)) }
        return Float(bitPattern: sign | ((exp + 127 - 15) << 23) | (mant << 13))
    }

    /// Round-to-nearest-even, as torch's `.half()`.
    @inline(__always)
    public static func half(fromFloat f: Float) -> UInt16 {
        let x = f.bitPattern
        let sign = UInt16((x >> 16) & 0x8000)
        let exp = Int((x >> 23) & 0xFF)
        let mant = x & 0x7F_FFFF
        if exp == 0xFF { return sign | 0x7C00 | (mant != 0 ? 0x200 : 0) }
        let e = exp - 127 + 15
        if e >= 0x1F { return sign | 0x7C00 }
        if e <= 0 {
            if e < -10 { return sign }
            let m = mant | 0x80_0000
            let shift = UInt32(14 - e)
            var r = m >> shift
            let rem = m & ((1 << shift) - 1)
            let halfway = UInt32(1) << (shift - 1)
            if rem > halfway || (rem == halfway && (r & 1) == 1) { r += 1 }
            return sign | UInt16(r)
        }
        var r = UInt32(e) << 10 | (mant >> 13)
        let rem = mant & 0x1FFF
        if rem > 0x1000 || (rem == 0x1000 && (r & 1) == 1) { r += 1 }
        return sign | UInt16(r)
    }

    @inline(__always)
    public static func float(fromBFloat16 b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

    @inline(__always)
    public static func bfloat16(fromFloat f: Float) -> UInt16 {
        let x = f.bitPattern
        if f.isNaN { return UInt16(x >> 16) | 0x40 }
        let rounding = UInt32(0x7FFF) + ((x >> 16) & 1)
        return UInt16((x &+ rounding) >> 16)
    }

    /// Converts `count` little-endian elements of `dtype` at `source` into floats. Large tensors are split
    /// across the worker threads: loading is copying and converting gigabytes out of a file mapping, and one
    /// thread left the other core idle (or spinning) for most of a model's load.
    public static func convert(_ source: UnsafeRawPointer, dtype: DType, count: Int, into dest: UnsafeMutablePointer<Float>) {
        Parallel.forRanges(count, minChunk: 1 << 18) { r in
            convertSerially(source + r.lowerBound * dtype.byteSize, dtype: dtype, count: r.count, into: dest + r.lowerBound)
        }
    }

    static func convertSerially(_ source: UnsafeRawPointer, dtype: DType, count: Int, into dest: UnsafeMutablePointer<Float>) {
        switch dtype {
        case .float32:
            // Source may be unaligned inside a file mapping.
            UnsafeMutableRawPointer(dest).copyMemory(from: source, byteCount: count * 4)
        case .float16:
            #if canImport(CKernels)
            if sdk_f16_to_f32(source, dest, Int64(count)) != 0 { return }
            #endif
            for i in 0..<count { dest[i] = float(fromHalf: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .bfloat16:
            for i in 0..<count { dest[i] = float(fromBFloat16: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        }
    }
}
