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
        }
    }

    /// Applies the activation in place over a buffer, in parallel.
    public func apply(inPlace p: UnsafeMutablePointer<Float>, count: Int) {
        if self == .identity { return }
        Parallel.forRanges(count, minChunk: 1 << 14) { r in
            for i in r { p[i] = apply(p[i]) }
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
            Parallel.forRanges(n, minChunk: 1 << 14) { r in
                for i in r { d[i] = activation.apply(src[i]) }
            }
        }
        return out
    }

    public func silu() -> Tensor { applying(.silu) }
    public func gelu(approximateTanh: Bool = false) -> Tensor { applying(approximateTanh ? .geluTanh : .gelu) }
    public func quickGelu() -> Tensor { applying(.quickGelu) }
}
