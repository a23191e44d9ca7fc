/// Scalar re-statements of the AVX routines torch uses for float `randn` blocks
/// (`log256_ps` and `sincos256_ps` of aten/src/ATen/native/cpu/avx_mathfun.h, Cephes polynomials).
/// torch's x86-64 build runs these vectorised, with the compiler fusing multiply-add pairs into FMA;
/// each lane is independent, so evaluating the same operations lane by lane gives the same bits.
/// Which multiplication GCC fuses matters; rounding every product separately does not match torch.
enum CephesFloat {
    /// a * b + c with one rounding, as the FMA the compiler emits for torch.
    @inline(__always)
    static func madd(_ a: Float, _ b: Float, _ c: Float) -> Float {
        c.addingProduct(a, b)
    }

    /// Natural log, as `log256_ps` (x > 0 in torch's use: 1 - u with u in [0, 1)).
    static func log(_ xIn: Float) -> Float {
        if xIn <= 0 { return .nan }
        var x = max(xIn, Float(bitPattern: 0x0080_0000))
        let bits = x.bitPattern
        var e = Float(Int32(bitPattern: bits >> 23) - 0x7F)
        x = Float(bitPattern: (bits & ~UInt32(0x7F80_0000)) | Float(0.5).bitPattern)
        e = e + 1
        let sqrtHalf: Float = 0.707106781186547524
        if x < sqrtHalf {
            e = e - 1
            x = (x - 1) + x
        } else {
            x = x - 1
        }
        let z = x * x
        var y: Float = 7.0376836292E-2
        y = madd(y, x, -1.1514610310E-1)
        y = madd(y, x, 1.1676998740E-1)
        y = madd(y, x, -1.2420140846E-1)
        y = madd(y, x, 1.4249322787E-1)
        y = madd(y, x, -1.6668057665E-1)
        y = madd(y, x, 2.0000714765E-1)
        y = madd(y, x, -2.4999993993E-1)
        y = madd(y, x, 3.3333331174E-1)
        y = y * x
        // GCC fuses the first multiplication of `y * z + e * q1` (in program order) into the add.
        y = madd(y, z, e * -2.12194440e-4)
        y = y - z * 0.5  // z * 0.5 is exact, so fusing it changes nothing
        return madd(e, 0.693359375, x + y)
    }

    /// Sine and cosine, as `sincos256_ps`.
    static func sincos(_ xIn: Float) -> (sin: Float, cos: Float) {
        var signSin = xIn.bitPattern & 0x8000_0000
        var x = Swift.abs(xIn)
        var y = x * 1.27323954473516
        var j = Int32(y)  // truncation, as cvttps
        j = (j &+ 1) & ~1
        y = Float(j)
        let swapSignSin = UInt32(bitPattern: (j & 4) << 29)
        let polyMask = (j & 2) == 0
        x = madd(y, -0.78515625, x)
        x = madd(y, -2.4187564849853515625e-4, x)
        x = madd(y, -3.77489497744594108e-8, x)
        let j4 = j &- 2
        let signCos = UInt32(bitPattern: (~j4 & 4) << 29)
        signSin ^= swapSignSin

        let z = x * x
        var c: Float = 2.443315711809948E-005
        c = madd(c, z, -1.388731625493765E-003)
        c = madd(c, z, 4.166664568298827E-002)
        c = c * z
        c = madd(c, z, -(z * 0.5))
        c = c + 1

        var s: Float = -1.9515295891E-4
        s = madd(s, z, 8.3321608736E-3)
        s = madd(s, z, -1.6666654611E-1)
        s = s * z
        s = madd(s, x, x)

        // Blend exactly as the vector code does (masking, then sums with +0), so signed zeros agree.
        let sinPart: Float = polyMask ? s : 0
        let cosPart: Float = polyMask ? 0 : c
        let sinValue = cosPart + sinPart
        let cosValue = (c - cosPart) + (s - sinPart)
        return (Float(bitPattern: sinValue.bitPattern ^ signSin), Float(bitPattern: cosValue.bitPattern ^ signCos))
    }
}
