/// Element types that appear in weight files (SafeTensors dtype names; torch storages map onto
/// them). Compute is fp32, so every type that has an exact or customary float meaning converts
/// to `Float`; integers above 2^24 lose precision, as `tensor.float()` does in torch.
public enum ScalarType: String, Sendable, CaseIterable {
    case bool = "BOOL"
    case uint8 = "U8"
    case int8 = "I8"
    case float8e5m2 = "F8_E5M2"
    case float8e4m3 = "F8_E4M3"
    case int16 = "I16"
    case uint16 = "U16"
    case float16 = "F16"
    case bfloat16 = "BF16"
    case int32 = "I32"
    case uint32 = "U32"
    case float32 = "F32"
    case complex64 = "C64"
    case float64 = "F64"
    case int64 = "I64"
    case uint64 = "U64"

    public var byteSize: Int {
        switch self {
        case .bool, .uint8, .int8, .float8e5m2, .float8e4m3: return 1
        case .int16, .uint16, .float16, .bfloat16: return 2
        case .int32, .uint32, .float32: return 4
        case .complex64, .float64, .int64, .uint64: return 8
        }
    }

    /// The storage dtype this maps to, for the three types the engine stores natively.
    public var dtype: DType? {
        switch self {
        case .float32: return .float32
        case .float16: return .float16
        case .bfloat16: return .bfloat16
        default: return nil
        }
    }

    public init(_ dtype: DType) {
        switch dtype {
        case .float32: self = .float32
        case .float16: self = .float16
        case .bfloat16: self = .bfloat16
        }
    }

    /// Whether `Float` conversion is defined (complex numbers have no single float value).
    public var convertsToFloat: Bool { self != .complex64 }

    /// Element `index` of little-endian data at `base`, as Float. Caller guarantees bounds.
    @inline(__always)
    func load(_ base: UnsafeRawPointer, _ index: Int) -> Float {
        switch self {
        case .float32: return Float(bitPattern: base.loadUnaligned(fromByteOffset: 4 * index, as: UInt32.self).littleEndian)
        case .float16: return HalfConversion.float(fromHalf: base.loadUnaligned(fromByteOffset: 2 * index, as: UInt16.self).littleEndian)
        case .bfloat16: return HalfConversion.float(fromBFloat16: base.loadUnaligned(fromByteOffset: 2 * index, as: UInt16.self).littleEndian)
        case .float64: return Float(Double(bitPattern: base.loadUnaligned(fromByteOffset: 8 * index, as: UInt64.self).littleEndian))
        case .int64: return Float(Int64(littleEndian: base.loadUnaligned(fromByteOffset: 8 * index, as: Int64.self)))
        case .uint64: return Float(UInt64(littleEndian: base.loadUnaligned(fromByteOffset: 8 * index, as: UInt64.self)))
        case .int32: return Float(Int32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * index, as: Int32.self)))
        case .uint32: return Float(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * index, as: UInt32.self)))
        case .int16: return Float(Int16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * index, as: Int16.self)))
        case .uint16: return Float(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * index, as: UInt16.self)))
        case .int8: return Float(base.load(fromByteOffset: index, as: Int8.self))
        case .uint8: return Float(base.load(fromByteOffset: index, as: UInt8.self))
        case .bool: return base.load(fromByteOffset: index, as: UInt8.self) != 0 ? 1 : 0
        case .float8e5m2:
            // E5M2 is the top byte of an IEEE half.
            return HalfConversion.float(fromHalf: UInt16(base.load(fromByteOffset: index, as: UInt8.self)) << 8)
        case .float8e4m3: return Self.floatFromE4M3FN(base.load(fromByteOffset: index, as: UInt8.self))
        case .complex64: return .nan
        }
    }

    /// OCP E4M3 "FN": bias 7, no infinities, S.1111.111 is NaN.
    static func floatFromE4M3FN(_ b: UInt8) -> Float {
        let sign: Float = b & 0x80 != 0 ? -1 : 1
        let exp = Int((b >> 3) & 0xF)
        let mant = Float(b & 0x7)
        if exp == 0xF && b & 0x7 == 0x7 { return .nan }
        if exp == 0 { return sign * mant / 8 * Float(sign: .plus, exponent: -6, significand: 1) }
        return sign * (1 + mant / 8) * Float(sign: .plus, exponent: exp - 7, significand: 1)
    }

    /// Converts `count` contiguous elements into `dest`; the three native types take the bulk path.
    func convert(_ source: UnsafeRawPointer, count: Int, into dest: UnsafeMutablePointer<Float>) {
        if let dtype {
            HalfConversion.convert(source, dtype: dtype, count: count, into: dest)
        } else {
            for i in 0..<count { dest[i] = load(source, i) }
        }
    }
}
