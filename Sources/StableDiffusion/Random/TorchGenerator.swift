#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A reproduction of `torch.Generator("cpu")`: `TorchGenerator(seed: s)` behaves like
/// `torch.Generator("cpu").manual_seed(s)`, and `randn` draws the same values, bit for bit, as
/// `torch.randn(shape, generator=g)` on x86-64 (torch's vectorised float path, checked against
/// torch 2.15 on an AVX-512 machine; torch builds without AVX2 kernels use libm instead).
///
/// The generator is a value: draws mutate it, copies are independent streams.
public struct TorchGenerator: Sendable, Equatable {
    /// MT19937 state. torch's `mt19937` is the textbook engine seeded with the low 32 bits of the seed.
    private var state: [UInt32]
    private var index: Int
    /// torch caches the second value of a double Box-Muller pair for the next scalar-path normal draw.
    private var nextDoubleNormal: Double?
    /// The seed last given (like `Generator.initial_seed()`).
    public private(set) var initialSeed: UInt64

    public init(seed: UInt64) {
        state = [UInt32](repeating: 0, count: 624)
        index = 624
        nextDoubleNormal = nil
        initialSeed = seed
        manualSeed(seed)
    }

    /// Seeds like `Generator.manual_seed`, which also forgets any cached normal value.
    public mutating func manualSeed(_ seed: UInt64) {
        initialSeed = seed
        nextDoubleNormal = nil
        state[0] = UInt32(truncatingIfNeeded: seed)
        for j in 1..<624 {
            let prev = state[j - 1]
            state[j] = 1_812_433_253 &* (prev ^ (prev >> 30)) &+ UInt32(j)
        }
        index = 624
    }

    private mutating func twist() {
        for i in 0..<624 {
            let y = (state[i] & 0x8000_0000) | (state[(i + 1) % 624] & 0x7FFF_FFFF)
            var v = state[(i + 397) % 624] ^ (y >> 1)
            if y & 1 != 0 { v ^= 0x9908_B0DF }
            state[i] = v
        }
        index = 0
    }

    /// One 32-bit draw (torch's `random()`).
    public mutating func nextUInt32() -> UInt32 {
        if index >= 624 { twist() }
        var y = state[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C_5680
        y ^= (y << 15) & 0xEFC6_0000
        y ^= y >> 18
        return y
    }

    /// One 64-bit draw (torch's `random64()`): the first 32-bit draw is the high half.
    public mutating func nextUInt64() -> UInt64 {
        let hi = UInt64(nextUInt32())
        let lo = UInt64(nextUInt32())
        return hi << 32 | lo
    }

    /// torch's `uniform_real_distribution<float>(0, 1)`: 24 random bits of one 32-bit draw.
    @inline(__always)
    private mutating func uniformFloat() -> Float {
        Float(nextUInt32() & 0xFF_FFFF) * (1.0 / 16_777_216.0)
    }

    /// torch's `uniform_real_distribution<double>(0, 1)`: 53 random bits of one 64-bit draw.
    @inline(__always)
    private mutating func uniformDouble() -> Double {
        Double(nextUInt64() & ((1 << 53) - 1)) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// torch's `normal_distribution<double>` (Box-Muller on two doubles, caching the sine half).
    private mutating func scalarNormal() -> Double {
        if let cached = nextDoubleNormal {
            nextDoubleNormal = nil
            return cached
        }
        let u1 = uniformDouble()
        let u2 = uniformDouble()
        let r = (-2.0 * log1p(-u2)).squareRoot()
        let theta = 2.0 * Double.pi * u1
        nextDoubleNormal = r * sin(theta)
        return r * cos(theta)
    }

    /// Standard normal float32 values in torch's element order for a contiguous tensor of `count`
    /// elements, advancing the state exactly as `torch.randn` does.
    public mutating func randnFloats(count: Int) -> [Float] {
        guard count > 0 else { return [] }
        if count < 16 {
            // torch's serial kernel: one double normal per element, rounded to float.
            return (0..<count).map { _ in Float(scalarNormal()) }
        }
        var data = [Float](repeating: 0, count: count)
        data.withUnsafeMutableBufferPointer { buf in
            for i in 0..<count { buf[i] = uniformFloat() }
            var i = 0
            while i + 16 <= count {
                Self.boxMuller16(buf.baseAddress! + i)
                i += 16
            }
            if count % 16 != 0 {
                // torch redraws the uniforms of the last 16 elements and transforms them again.
                let tail = buf.baseAddress! + (count - 16)
                for j in 0..<16 { tail[j] = uniformFloat() }
                Self.boxMuller16(tail)
            }
        }
        return data
    }

    /// Standard normal float64 values, as `torch.randn(..., dtype=torch.float64)`.
    public mutating func randnDoubles(count: Int) -> [Double] {
        guard count > 0 else { return [] }
        if count < 16 { return (0..<count).map { _ in scalarNormal() } }
        var data = [Double](repeating: 0, count: count)
        data.withUnsafeMutableBufferPointer { buf in
            for i in 0..<count { buf[i] = uniformDouble() }
            var i = 0
            while i + 16 <= count {
                Self.boxMuller16(buf.baseAddress! + i)
                i += 16
            }
            if count % 16 != 0 {
                let tail = buf.baseAddress! + (count - 16)
                for j in 0..<16 { tail[j] = uniformDouble() }
                Self.boxMuller16(tail)
            }
        }
        return data
    }

    /// torch's `normal_fill_16_AVX2`: pairs element j with j + 8, using the Cephes log and sincos
    /// approximations and a float 2*pi (its scalar `normal_fill_16<float>` is not what x86-64 runs).
    @inline(__always)
    private static func boxMuller16(_ d: UnsafeMutablePointer<Float>) {
        let twoPi = Float(2.0 * Double.pi)
        for j in 0..<8 {
            let u1: Float = 1 - d[j]
            let u2 = d[j + 8]
            let radius = (-2 * CephesFloat.log(u1)).squareRoot()
            let (s, c) = CephesFloat.sincos(twoPi * u2)
            d[j] = radius * c
            d[j + 8] = radius * s
        }
    }

    @inline(__always)
    private static func boxMuller16(_ d: UnsafeMutablePointer<Double>) {
        for j in 0..<8 {
            let u1 = 1 - d[j]
            let u2 = d[j + 8]
            let radius = (-2 * log(u1)).squareRoot()
            let theta = 2.0 * Double.pi * u2
            d[j] = radius * cos(theta)
            d[j + 8] = radius * sin(theta)
        }
    }

    /// `torch.randn(shape, generator=self)` as a float32 tensor of that shape (torch element order).
    public mutating func randn(shape: [Int]) throws -> Tensor {
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw TensorError.invalidArgument("randn: negative dimension in shape \(shape)")
        }
        return try Tensor(shape: shape, scalars: randnFloats(count: shape.reduce(1, *)))
    }

    /// Draws exactly like `torch.randn((batch, channels, height, width), generator=self)` and returns the
    /// values as an NHWC tensor `[batch, height, width, channels]`, the engine's latent layout.
    public mutating func randnNHWC(batch: Int, channels: Int, height: Int, width: Int) throws -> Tensor {
        let nchw = try randn(shape: [batch, channels, height, width])
        return nchwToNHWC(nchw)
    }
}

/// Permutes a rank-4 NCHW tensor to NHWC.
func nchwToNHWC(_ t: Tensor) -> Tensor {
    let (n, c, h, w) = (t.shape[0], t.shape[1], t.shape[2], t.shape[3])
    var out = Tensor(uninitializedShape: [n, h, w, c])
    t.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
            for b in 0..<n {
                for ch in 0..<c {
                    for y in 0..<h {
                        for x in 0..<w {
                            dst[((b * h + y) * w + x) * c + ch] = src[((b * c + ch) * h + y) * w + x]
                        }
                    }
                }
            }
        }
    }
    return out
}
