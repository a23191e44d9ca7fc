import CKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Element-wise activations, usable alone or fused into a convolution / linear layer.
public enum Activation: Sendable, Hashable {
    case identity
    /// `x * sigmoid(x)` (torch `silu`).
    case silu
    /// `0.5 x (1 + erf(x / sqrt 2))` (torch `gelu`, approximate="none").
    case gelu
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` (torch `gelu`, approximate="tanh").
    case geluTanh
    /// `x * sigmoid(1.702 x)` (OpenAI CLIP's quick_gelu).
    case quickGelu
    /// `max(x, 0)` (the tiny autoencoder's activation).
    case relu

    @inline(__always)
    public func apply(_ x: Float) -> Float {
        switch self {
        case .identity: return x
        case .silu: return x / (1 + expf(-x))
        case .gelu: return 0.5 * x * (1 + erff(x * 0.70710678118654752))
        case .geluTanh:
            let inner: Float = 0.7978845608028654 * (x + 0.044715 * x * x * x)
            return 0.5 * x * (1 + tanhf(inner))
        case .quickGelu: return x / (1 + expf(-1.702 * x))
        case .relu: return x > 0 ? x : 0
        }
    }

    /// The activation on 16 lanes (vector exp/erf; within ~2e-7 of the scalar forms).
    @inline(__always)
    func apply(_ x: SIMD16<Float>) -> SIMD16<Float> {
        switch self {
        case .identity: return x
        case .silu: return x / (VectorMath.exp(-x) + 1)
        case .quickGelu: return x / (VectorMath.exp(x * -1.702) + 1)
        case .relu: return x.replacing(with: 0, where: x .< 0)
        case .gelu: return x * 0.5 * (VectorMath.erf(x * 0.70710678118654752) + 1)
        case .geluTanh:
            // tanh(u) = 1 - 2 / (e^(2u) + 1)
            let u = (x + x * x * x * 0.044715) * 0.7978845608028654
            return x * 0.5 * (2 - 2 / (VectorMath.exp(u * 2) + 1))
        }
    }

    /// The activation's code in `CKernels`.
    var nativeKind: Int32? {
        switch self {
        case .identity: return nil
        case .silu: return Int32(SDK_SILU)
        case .quickGelu: return Int32(SDK_QUICK_GELU)
        case .gelu: return Int32(SDK_GELU)
        case .geluTanh: return Int32(SDK_GELU_TANH)
        case .relu: return nil  // the SIMD path: a compare and a select need no C kernel
        }
    }

    /// Applies the activation in place to `count` floats, 16 at a time.
    @inline(__always)
    func applyRow(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
        if KernelDispatch.native, let kind = nativeKind { sdk_activation(p, Int64(count), kind); return }
        let raw = UnsafeMutableRawPointer(p)
        let vectors = count / 16
        for i in 0..<vectors {
            raw.storeBytes(of: apply(raw.loadUnaligned(fromByteOffset: i * 64, as: SIMD16<Float>.self)), toByteOffset: i * 64, as: SIMD16<Float>.self)
        }
        for i in (vectors * 16)..<count { p[i] = apply(p[i]) }
    }

    /// Applies the activation in place over a buffer, in parallel (or on this thread with `serial`, from
    /// inside another parallel loop).
    public func apply(inPlace p: UnsafeMutablePointer<Float>, count: Int, serial: Bool = false) {
        if self == .identity { return }
        if serial { applyRow(p, count); return }
        Parallel.forRanges(count, minChunk: 1 << 14) { r in
            applyRow(p + r.lowerBound, r.count)
        }
    }
}

extension Tensor {
    /// Returns `activation` applied to every element.
    public func applying(_ activation: Activation) -> Tensor {
        var out = Tensor(uninitializedShape: shape)
        let src = unsafePointer
        let n = count
        out.withUnsafeMutableBufferPointer { dst in
            let d = dst.baseAddress!
            d.update(from: src, count: n)
            activation.apply(inPlace: d, count: n)
        }
        return out
    }

    public func silu() -> Tensor { applying(.silu) }
    public func gelu(approximateTanh: Bool = false) -> Tensor { applying(approximateTanh ? .geluTanh : .gelu) }
    public func quickGelu() -> Tensor { applying(.quickGelu) }

    /// GEGLU (diffusers' `GEGLU` after its projection): the last dimension's halves `a` and `b` give `a * gelu(b)`
    /// (erf GELU), `[..., 2n] -> [..., n]`.
    public func geglu() throws -> Tensor {
        let n = try gegluWidth()
        var out = Tensor(uninitializedShape: Array(shape.dropLast()) + [n])
        let h = unsafePointer
        out.withUnsafeMutableBufferPointer { ob in
            let y = ob.baseAddress!
            Parallel.forRanges(count / (2 * n), minChunk: 16) { r in
                Self.gegluRows(h + r.lowerBound * 2 * n, rows: r.count, width: n, into: y + r.lowerBound * n)
            }
        }
        return out
    }

    /// `geglu` written straight to bf16 (what the bf16 projection after it rounds its input to).
    public func gegluBF16() throws -> BF16Tensor {
        let n = try gegluWidth()
        let out = BF16Buffer(count: count / 2)
        let h = unsafePointer
        Parallel.forRanges(count / (2 * n), minChunk: 16) { r in
            out.writeRows(r, width: n) { first, rows, block in
                Self.gegluRows(h + first * 2 * n, rows: rows, width: n, into: block)
            }
        }
        return BF16Tensor(shape: Array(shape.dropLast()) + [n], buffer: out)
    }

    private func gegluWidth() throws -> Int {
        guard rank >= 1, let last = shape.last, last > 0, last % 2 == 0 else {
            throw TensorError.shapeMismatch("geglu needs an even, non-empty last dimension, got \(shape)")
        }
        return last / 2
    }

    static func gegluRows(_ h: UnsafePointer<Float>, rows: Int, width n: Int, into out: UnsafeMutablePointer<Float>) {
        if KernelDispatch.native, sdk_geglu_rows(h, Int64(rows), Int64(n), out) != 0 { return }
        for i in 0..<rows {
            let row = h + i * 2 * n, dst = out + i * n
            dst.update(from: row + n, count: n)
            Activation.gelu.apply(inPlace: dst, count: n, serial: true)
            for j in 0..<n { dst[j] *= row[j] }
        }
    }
}
