import CKernels

/// Vectorised transcendental functions for the hot element-wise kernels (softmax, GELU, SiLU), within
/// about 2 ulp of libm, so results stay within the parity tolerances while running 16 lanes at a time.
enum VectorMath {
    typealias V = SIMD16<Float>

    /// e^x: x = n ln2 + r with |r| <= ln2/2, e^r by a degree-6 polynomial (Cephes' minimax coefficients),
    /// times 2^n assembled in the exponent bits. Underflows to 0 below -87.3, overflows to +inf above 88.7.
    @inline(__always)
    static func exp(_ x: V) -> V {
        let hi: Float = 88.72283, lo: Float = -87.33654
        var xc = x
        xc.replace(with: hi, where: x .> hi)
        xc.replace(with: lo, where: x .< lo)
        // Round x/ln2 to the nearest integer with the 1.5 * 2^23 trick: the integer lands in the low
        // mantissa bits (no float->int conversion, which Swift's SIMD lowers to a slow generic path).
        let magic = V(repeating: 12_582_912)
        let t = xc * 1.442695040888963 + magic
        let n = t - magic
        var r = xc - n * 0.693359375
        r = r - n * -2.12194440e-4
        var p = V(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        let er = p * (r * r) + r + 1
        let ni = unsafeBitCast(t, to: SIMD16<Int32>.self) &- 0x4B40_0000
        var result = er * unsafeBitCast((ni &+ 127) &<< 23, to: V.self)
        result.replace(with: 0, where: x .< lo)
        result.replace(with: Float.infinity, where: x .> hi)
        return result
    }

    /// erf(x) by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7), with one vector exp.
    @inline(__always)
    static func erf(_ x: V) -> V {
        var ax = x
        ax.replace(with: -x, where: x .< 0)
        let t = 1 / (ax * 0.3275911 + 1)
        var p = V(repeating: 1.061405429)
        p = p * t - 1.453152027
        p = p * t + 1.421413741
        p = p * t - 0.284496736
        p = p * t + 0.254829592
        var y = 1 - p * t * exp(-(ax * ax))
        y.replace(with: -y, where: x .< 0)
        return y
    }

    /// Horizontal maximum.
    @inline(__always)
    static func max(_ v: V) -> Float { v.max() }
}

/// Numerically stable softmax of one row in place (max-subtracted), 16 lanes at a time.
@inline(__always)
func softmaxRow(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
    let s = expRowMinusMax(p, n)
    guard s > 0 else { return }
    let raw = UnsafeMutableRawPointer(p)
    let vectors = n / 16
    let inv = SIMD16<Float>(repeating: 1 / s)
    for i in 0..<vectors {
        raw.storeBytes(of: raw.loadUnaligned(fromByteOffset: i * 64, as: SIMD16<Float>.self) * inv, toByteOffset: i * 64, as: SIMD16<Float>.self)
    }
    let invS = 1 / s
    for j in (vectors * 16)..<n { p[j] *= invS }
}

/// The unnormalised half of softmax: `exp(x - max(x))` in place, returning the row's sum (0 for a fully
/// masked row, which is left all zero). Attention divides its output rows by the sum instead, which is
/// head-dim wide rather than a pass over all the keys.
@inline(__always)
func expRowMinusMax(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> Float {
    if KernelDispatch.native { return sdk_exp_minus_max(p, Int64(n)) }
    let vectors = n / 16
    var m = -Float.infinity
    var vm = SIMD16<Float>(repeating: -.infinity)
    let raw = UnsafeMutableRawPointer(p)
    for i in 0..<vectors {
        let v = raw.loadUnaligned(fromByteOffset: i * 64, as: SIMD16<Float>.self)
        vm.replace(with: v, where: v .> vm)
    }
    m = vm.max()
    for j in (vectors * 16)..<n { m = Swift.max(m, p[j]) }
    if m == -.infinity { for j in 0..<n { p[j] = 0 }; return 0 }  // fully masked row
    let vmax = SIMD16<Float>(repeating: m)
    var vs = SIMD16<Float>(repeating: 0)
    for i in 0..<vectors {
        let e = VectorMath.exp(raw.loadUnaligned(fromByteOffset: i * 64, as: SIMD16<Float>.self) - vmax)
        raw.storeBytes(of: e, toByteOffset: i * 64, as: SIMD16<Float>.self)
        vs += e
    }
    var s = vs.sum()
    if vectors * 16 < n {
        var tail = SIMD16<Float>(repeating: -.infinity)
        for j in (vectors * 16)..<n { tail[j - vectors * 16] = p[j] }
        let e = VectorMath.exp(tail - vmax)
        for j in (vectors * 16)..<n { p[j] = e[j - vectors * 16]; s += e[j - vectors * 16] }
    }
    return s
}

/// Whether the C kernels (`CKernels`: AVX-512 with FMA, chosen at run time) replace the Swift SIMD loops,
/// which the baseline x86-64 build runs 4 lanes wide without FMA. True where the CPU has AVX-512F.
public enum KernelDispatch {
    /// Tests turn this off to check the portable path against the native one; nothing else should.
    nonisolated(unsafe) public static var native = sdk_has_avx512() != 0
}
