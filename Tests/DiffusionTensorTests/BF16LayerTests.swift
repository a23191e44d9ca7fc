import DiffusionTensor
import XCTest

/// bf16 compute (`ComputePrecision.bf16`): the rounding kernel, and convolutions and linear layers
/// against fp32 twice over: on bf16-rounded operands they must agree to fp32 accumulation order (so the
/// bf16 path multiplies exactly the rounded values, with bias, residual and activation in place), and on
/// the raw operands their error must be bf16's (neither zero, which would mean fp32 ran, nor larger).
final class BF16LayerTests: XCTestCase {
    static func random(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
        RandomTensorSource(seed: seed, scale: scale).makeTensor("t", shape: shape)
    }

    // bf16 keeps 8 significant bits: rounding moves a value by at most 2^-8 of itself, 1.66e-3 RMS on
    // normal data, so a product of two rounded values is off by 2.3e-3 RMS, and a sum of many such
    // products with random signs by about that much or less. Measured: 1.2e-3 to 2.3e-3 on these layers.
    // The band [4e-4, 4e-3] fails both when fp32 ran instead (about 1e-7) and when an operand was
    // rounded twice, truncated or mis-laid-out (1e-2 and up).
    static let bf16ErrorBand = 4e-4...4e-3

    /// Runs everywhere (without AVX512_BF16 both sides are the portable loop, and the expected patterns still hold).
    func testRoundingIsNearestEvenAndNativeMatchesPortable() {
        let patterns: [UInt32] = [0x3F80_8000, 0x3F81_8000, 0x3F80_8001, 0x3F80_7FFF, 0x7F7F_FFFF, 0xFF7F_FFFF,
                                  0x7F80_0000, 0xFF80_0000, 0x8000_0000, 0x0000_0000, 0x7FC0_0001, 0xFFFF_FFFF, 0x3F7F_FFFF]
        let expected: [UInt16] = [0x3F80, 0x3F82, 0x3F81, 0x3F80, 0x7F80, 0xFF80, 0x7F80, 0xFF80, 0x8000, 0x0000]
        let values = patterns.map(Float.init(bitPattern:))
        let native = BF16.bits(values), portable = BF16.bits(values, portable: true)
        XCTAssertEqual(Array(native.prefix(expected.count)), expected)
        for (i, (a, b)) in zip(native, portable).enumerated() where i >= expected.count {
            if values[i].isNaN {
                XCTAssertTrue(BF16.float(a).isNaN && BF16.float(b).isNaN, "NaN \(i)")
            } else {
                XCTAssertEqual(a, b, "value \(values[i])")
            }
        }
        XCTAssertEqual(BF16.float(native[12]), 1.0)  // 0x3F7FFFFF rounds up to 1
        // Lengths around the 32- and 16-wide steps, on ordinary values (subnormals excluded: the
        // instruction flushes them, the portable loop keeps them).
        for n in [1, 15, 16, 17, 31, 32, 33, 1000] {
            let v = Self.random([n], seed: UInt64(n), scale: 1000).scalars
            XCTAssertEqual(BF16.bits(v), BF16.bits(v, portable: true), "n=\(n)")
        }
    }

    func testConvolutionMultipliesRoundedOperandsExactly() throws {
        try requireBF16()
        // (in, out, kernel, stride, padding, input size): conv_in-like 4 channels, 3x3, 1x1, strided.
        let cases: [(Int, Int, Int, Int, Int, [Int])] = [(4, 32, 3, 1, 1, [2, 12, 10]), (64, 48, 3, 1, 1, [1, 9, 11]),
                                                         (40, 80, 1, 1, 0, [2, 8, 8]), (32, 32, 3, 2, 1, [1, 16, 14])]
        for (i, (cin, cout, k, s, p, size)) in cases.enumerated() {
            let w = Self.random([cout, cin, k, k], seed: UInt64(10 + i), scale: 0.2)
            let b = Self.random([cout], seed: UInt64(20 + i))
            let x = Self.random([size[0], size[1], size[2], cin], seed: UInt64(30 + i))
            let bf = try Conv2D(weight: w, bias: b, stride: s, padding: .uniform(p), precision: .bf16)
            let onRounded = try Conv2D(weight: w.roundedToBF16(), bias: b, stride: s, padding: .uniform(p))
            let fp = try Conv2D(weight: w, bias: b, stride: s, padding: .uniform(p))
            let (oh, ow) = bf.outputSize(height: size[1], width: size[2])
            let residual = Self.random([size[0], oh, ow, cout], seed: UInt64(40 + i))
            let out = try bf(x, residual: residual, activation: .silu)
            let exact = try onRounded(x.roundedToBF16(), residual: residual, activation: .silu)
            XCTAssertLessThan(out.relativeError(to: exact), 2e-6, "case \(i) against rounded operands")
            let e = try bf(x).relativeError(to: try fp(x))
            XCTAssertTrue(Self.bf16ErrorBand.contains(e), "case \(i): bf16 relative error \(e)")
        }
    }

    func testLinearMultipliesRoundedOperandsExactly() throws {
        try requireBF16()
        for (i, (rows, inF, outF)) in [(1, 32, 16), (154, 768, 768), (4097, 320, 1280), (77, 1024, 40)].enumerated() {
            let w = Self.random([outF, inF], seed: UInt64(50 + i), scale: 0.1)
            let b = Self.random([outF], seed: UInt64(60 + i))
            let x = Self.random([rows, inF], seed: UInt64(70 + i))
            let residual = Self.random([rows, outF], seed: UInt64(80 + i))
            let bf = try Linear(weight: w, bias: b, precision: .bf16)
            let onRounded = try Linear(weight: w.roundedToBF16(), bias: b)
            let out = try bf(x, residual: residual, activation: .gelu)
            let exact = try onRounded(x.roundedToBF16(), residual: residual, activation: .gelu)
            XCTAssertLessThan(out.relativeError(to: exact), 2e-6, "case \(i) against rounded operands")
            let noBias = try Linear(weight: w, bias: nil, precision: .bf16)
            let e = try noBias(x).relativeError(to: try Linear(weight: w, bias: nil)(x))
            XCTAssertTrue(Self.bf16ErrorBand.contains(e), "case \(i): bf16 relative error \(e)")
        }
    }

    /// Plans for other input sizes may want the one weight copy in another layout: alternating sizes
    /// must keep giving the first answer.
    func testAlternatingInputSizesKeepTheirResults() throws {
        try requireBF16()
        let conv = try Conv2D(weight: Self.random([64, 32, 3, 3], seed: 1, scale: 0.1), bias: nil, padding: .uniform(1), precision: .bf16)
        let small = Self.random([1, 5, 7, 32], seed: 2), large = Self.random([2, 40, 40, 32], seed: 3)
        let first = try conv(small)
        _ = try conv(large)
        XCTAssertEqual(try conv(small).scalars, first.scalars)
        let linear = try Linear(weight: Self.random([96, 64], seed: 4, scale: 0.1), bias: nil, precision: .bf16)
        let few = Self.random([3, 64], seed: 5), many = Self.random([5000, 64], seed: 6)
        let firstRows = try linear(few)
        _ = try linear(many)
        XCTAssertEqual(try linear(few).scalars, firstRows.scalars)
    }

    /// Loading lays the weights out as a 64x64 latent's call wants them, so the first such call moves
    /// nothing (one pass over the weights at load instead of a copy re-laid-out at the first call), in
    /// both precisions and for a linear layer at any row count; a size that wants another layout still
    /// gets it, and the same answer as a layer that started there.
    func testLoadTimeLayoutFitsTheFirstCall() throws {
        try requireBF16()
        let weight = Self.random([320, 320, 3, 3], seed: 7, scale: 0.05), bias = Self.random([320], seed: 8)
        let x = Self.random([1, 64, 64, 320], seed: 9)
        // Direct: a bf16 layer of 320 channels would otherwise run as Winograd (WinogradTests), laid out once at load.
        for precision in [ComputePrecision.fp32, .bf16] {
            let conv = try Conv2D(weight: weight, bias: bias, padding: .uniform(1), precision: precision, algorithm: .direct)
            let first = try conv(x)
            XCTAssertEqual(conv.weightRelayouts, 0, "\(precision)")
            // 320 -> 320 at 8x8 wants a narrower output-channel block than at 64x64 in bf16 (oneDNN's choice).
            let small = Self.random([1, 8, 8, 320], seed: 10)
            let fresh = try Conv2D(weight: weight, bias: bias, padding: .uniform(1), precision: precision, algorithm: .direct)
            XCTAssertEqual(try conv(small).scalars, try fresh(small).scalars, "\(precision)")
            XCTAssertEqual(try conv(x).scalars, first.scalars, "\(precision)")
        }
        let linear = try Linear(weight: Self.random([1280, 320], seed: 11, scale: 0.05), bias: nil, precision: .bf16)
        for rows in [77, 4096, 1] { _ = try linear(Self.random([rows, 320], seed: UInt64(rows))) }
        XCTAssertEqual(linear.weightRelayouts, 0)
    }

    /// Runs everywhere: the bf16 norm writes exactly the fp32 norm's values rounded (many rows, so several
    /// parallel ranges and cache blocks; 40 channels leave masked tails; two samples).
    func testGroupNormToBF16IsTheFP32NormRounded() throws {
        let x = Self.random([2, 37, 41, 40], seed: 40, scale: 3)
        let gamma = Self.random([40], seed: 41), beta = Self.random([40], seed: 42)
        for activation in [Activation.identity, .silu] {
            let fp32 = try x.groupNorm(groups: 8, gamma: gamma, beta: beta, eps: 1e-6, activation: activation)
            let bf16 = try x.groupNormBF16(groups: 8, gamma: gamma, beta: beta, eps: 1e-6, activation: activation)
            XCTAssertEqual(bf16.shape, x.shape)
            XCTAssertEqual(bf16.widened().scalars, fp32.roundedToBF16().scalars, "\(activation)")
        }
        XCTAssertThrowsError(try x.groupNormBF16(groups: 7, gamma: nil, beta: nil, eps: 1e-6)) {
            XCTAssertTrue(String(describing: $0).contains("7 groups"), "\($0)")
        }
    }

    /// Runs everywhere: the bf16 layer norm and GEGLU write exactly the fp32 ones' values rounded (rows across
    /// parallel ranges and cache blocks, 40 and 72 channels for masked tails); GEGLU is `a * gelu(b)` on the halves.
    func testLayerNormAndGEGLUToBF16AreTheFP32OnesRounded() throws {
        let x = Self.random([3, 700, 40], seed: 70, scale: 3)
        let gamma = Self.random([40], seed: 71), beta = Self.random([40], seed: 72)
        let norm = try x.layerNorm(gamma: gamma, beta: beta, eps: 1e-5)
        let normBF16 = try x.layerNormBF16(gamma: gamma, beta: beta, eps: 1e-5)
        XCTAssertEqual(normBF16.shape, x.shape)
        XCTAssertEqual(normBF16.widened().scalars, norm.roundedToBF16().scalars)

        let h = Self.random([2, 333, 144], seed: 73, scale: 2)
        let gated = try h.geglu()
        XCTAssertEqual(gated.shape, [2, 333, 72])
        let hs = h.scalars, gs = gated.scalars
        for row in [0, 1, 400, 665] {
            for j in [0, 15, 16, 71] {
                let a = hs[row * 144 + j], b = hs[row * 144 + 72 + j]
                XCTAssertEqual(gs[row * 72 + j], a * Activation.gelu.apply(b), accuracy: 1e-5 * max(1, abs(a * b)), "row \(row) column \(j)")
            }
        }
        XCTAssertEqual(try h.gegluBF16().widened().scalars, gated.roundedToBF16().scalars)
        XCTAssertThrowsError(try Self.random([4, 5], seed: 74).geglu()) { XCTAssertTrue("\($0)".contains("even"), "\($0)") }
    }

    /// A bf16 linear layer gives, on a bf16 input, what it gives on the fp32 input holding the same values, with a
    /// residual too; an fp32 layer refuses a bf16 input.
    func testLinearOnBF16InputMatchesRoundingItself() throws {
        let x = Self.random([2, 50, 64], seed: 80, scale: 2)
        let w = Self.random([96, 64], seed: 81, scale: 0.1), b = Self.random([96], seed: 82)
        let rounded = BF16Tensor(rounding: x)
        XCTAssertThrowsError(try Linear(weight: w, bias: b)(.bf16(rounded))) { XCTAssertTrue("\($0)".contains("bf16"), "\($0)") }
        try requireBF16()
        let linear = try Linear(weight: w, bias: b, precision: .bf16)
        XCTAssertEqual(try linear(.bf16(rounded)).scalars, try linear(x).scalars)
        let residual = Self.random([2, 50, 96], seed: 83)
        XCTAssertEqual(try linear(.bf16(rounded), residual: residual, activation: .silu).scalars,
                       try linear(x, residual: residual, activation: .silu).scalars)
        XCTAssertEqual(try linear(LayerInput(x, for: .bf16)).scalars, try linear(x).scalars)
        XCTAssertThrowsError(try linear(.bf16(try rounded.reshaped([50, 2, 64])), residual: residual))
        XCTAssertThrowsError(try rounded.reshaped([7, 64]))
    }

    /// Runs everywhere: the bf16 upsampling holds the fp32 upsampling's values rounded.
    func testUpsamplingToBF16IsTheFP32UpsamplingRounded() throws {
        let x = Self.random([2, 5, 7, 24], seed: 60, scale: 3)
        let bf16 = try x.upsampledNearest2xBF16()
        XCTAssertEqual(bf16.shape, [2, 10, 14, 24])
        XCTAssertEqual(bf16.widened().scalars, try x.upsampledNearest2x().roundedToBF16().scalars)
        XCTAssertThrowsError(try Tensor(zeros: [4, 4, 3]).upsampledNearest2xBF16())
    }

    /// A bf16 convolution on the bf16 norm's output gives what it gives on the fp32 norm's output, bit for
    /// bit, with and without a residual; an fp32 convolution refuses a bf16 input.
    func testConvolutionOnBF16InputMatchesRoundingItself() throws {
        let x = Self.random([1, 20, 18, 32], seed: 50, scale: 2)
        let normalized = try x.groupNormBF16(groups: 8, gamma: nil, beta: nil, eps: 1e-6, activation: .silu)
        let w = Self.random([48, 32, 3, 3], seed: 51, scale: 0.1), b = Self.random([48], seed: 52)
        XCTAssertThrowsError(try Conv2D(weight: w, bias: b, padding: .uniform(1))(normalized)) {
            XCTAssertTrue(String(describing: $0).contains("bf16"), "\($0)")
        }
        try requireBF16()
        let conv = try Conv2D(weight: w, bias: b, padding: .uniform(1), precision: .bf16)
        let fp32Input = try x.groupNorm(groups: 8, gamma: nil, beta: nil, eps: 1e-6, activation: .silu)
        XCTAssertEqual(try conv(normalized).scalars, try conv(fp32Input).scalars)
        let residual = Self.random([1, 20, 18, 48], seed: 53)
        XCTAssertEqual(try conv(normalized, residual: residual).scalars, try conv(fp32Input, residual: residual).scalars)
        XCTAssertThrowsError(try conv(normalized, residual: Self.random([1, 20, 18, 47], seed: 54)))
    }

    func testMissingCPUSupportIsRefusedNamingTheFlag() {
        let none = BF16Capability(hasAVX512BF16: false, hasAMXBF16: false, hasOneDNN: true)
        let reason = ComputePrecision.bf16.unsupportedReason(on: none)
        XCTAssertNotNil(reason)
        XCTAssertTrue(reason?.contains("--precision bf16") ?? false, reason ?? "")
        XCTAssertTrue(reason?.contains("AVX512_BF16") ?? false, reason ?? "")
        XCTAssertThrowsError(try ComputePrecision.bf16.checkSupported(on: none)) { error in
            XCTAssertEqual(error as? TensorError, .invalidArgument(reason ?? ""))
        }
        XCTAssertNil(ComputePrecision.bf16.unsupportedReason(on: BF16Capability(hasAVX512BF16: false, hasAMXBF16: true, hasOneDNN: true)))
        XCTAssertNil(ComputePrecision.bf16.unsupportedReason(on: BF16Capability(hasAVX512BF16: true, hasAMXBF16: false, hasOneDNN: true)))
        let noBackend = BF16Capability(hasAVX512BF16: true, hasAMXBF16: true, hasOneDNN: false)
        XCTAssertTrue(ComputePrecision.bf16.unsupportedReason(on: noBackend)?.contains("oneDNN") ?? false)
        XCTAssertNil(ComputePrecision.fp32.unsupportedReason(on: none))
        XCTAssertNil(ComputePrecision.fp32.unsupportedReason(on: noBackend))
    }

    func testPortableConvolutionRefusesBF16() {
        XCTAssertThrowsError(try Conv2D(weight: Tensor(zeros: [2, 2, 1, 1]), bias: nil, backend: .portable, precision: .bf16)) {
            XCTAssertTrue(String(describing: $0).contains("bf16"), "\($0)")
        }
    }

    func testRelativeError() throws {
        let a = try Tensor(shape: [2], scalars: [3, 4]), b = try Tensor(shape: [2], scalars: [3, 4.5])
        XCTAssertEqual(b.relativeError(to: a), 0.1, accuracy: 1e-12)
        XCTAssertEqual(a.relativeError(to: a), 0)
        XCTAssertEqual(a.relativeError(to: try Tensor(shape: [1, 2], scalars: [3, 4])), .infinity)
        XCTAssertEqual(try Tensor(shape: [2], scalars: [.nan, 0]).relativeError(to: a), .infinity)
    }
}

extension XCTestCase {
    /// bf16 layer tests need the hardware (refusal tests run everywhere).
    func requireBF16() throws {
        try XCTSkipIf(ComputePrecision.bf16.unsupportedReason() != nil, "this CPU or build has no bf16 compute")
    }
}
