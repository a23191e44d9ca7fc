import DiffusionTensor
import XCTest

/// bf16 3x3 convolutions as Winograd F(2x2, 3x3) (`Conv2D.Algorithm.winograd`) against the fp32 direct
/// convolution and the bf16 direct one: odd image sizes (partial tiles at the bottom and right), channel counts
/// that leave masked tails, bias, residual, activation, batches, bf16 inputs, and an image large enough to run in
/// several chunks of tiles.
final class WinogradTests: XCTestCase {
    static func random(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
        BF16LayerTests.random(shape, seed: seed, scale: scale)
    }

    /// Winograd rounds the transformed input and weights (sums of up to 4 inputs, and of 9 weights / 4) instead of
    /// the operands, and its output transform adds up to 9 products: its error is larger than the direct bf16
    /// kernel's: measured 2.8e-3 to 3.2e-3 on these layers, against 1.6e-3 to 1.8e-3 direct (1.7x to 1.8x). The checks fail when fp32 ran (about 1e-7), when a
    /// transform is wrong (a wrong sign or tile edge gives 1e-1 and up) and when an operand was rounded twice.
    static let errorBand = 4e-4...6e-3
    static let maxRatioToDirect = 2.5

    func testMatchesTheDirectConvolutionWithinBF16sBand() throws {
        try requireBF16()
        // (in, out, batch, height, width): odd sizes, 72/88 channels (masked tails), one image of two chunks.
        let cases: [(Int, Int, Int, Int, Int)] = [(64, 64, 1, 9, 11), (72, 88, 2, 16, 13), (128, 96, 2, 7, 8),
                                                  (64, 64, 1, 190, 190)]
        for (i, (cin, cout, n, h, w)) in cases.enumerated() {
            let weight = Self.random([cout, cin, 3, 3], seed: UInt64(100 + i), scale: 0.1)
            let bias = Self.random([cout], seed: UInt64(110 + i))
            let x = Self.random([n, h, w, cin], seed: UInt64(120 + i))
            let residual = Self.random([n, h, w, cout], seed: UInt64(130 + i))
            let winograd = try Conv2D(weight: weight, bias: bias, padding: .uniform(1), precision: .bf16, algorithm: .winograd)
            XCTAssertEqual(winograd.algorithm, .winograd, "case \(i)")
            let direct = try Conv2D(weight: weight, bias: bias, padding: .uniform(1), precision: .bf16, algorithm: .direct)
            let fp32 = try Conv2D(weight: weight, bias: bias, padding: .uniform(1))
            let exact = try fp32(x, residual: residual, activation: .silu)
            let errorW = try winograd(x, residual: residual, activation: .silu).relativeError(to: exact)
            let errorD = try direct(x, residual: residual, activation: .silu).relativeError(to: exact)
            XCTAssertTrue(Self.errorBand.contains(errorW), "case \(i): Winograd relative error \(errorW)")
            XCTAssertLessThan(errorW, Self.maxRatioToDirect * errorD, "case \(i): Winograd \(errorW), direct bf16 \(errorD)")
            // Without residual and activation: the plain output, bias included.
            let plain = try winograd(x).relativeError(to: try fp32(x))
            XCTAssertTrue(Self.errorBand.contains(plain), "case \(i): plain relative error \(plain)")
        }
    }

    /// A bf16 input is transformed as the fp32 input holding the same values, bit for bit.
    func testBF16InputIsTheRoundedFP32Input() throws {
        try requireBF16()
        let x = Self.random([2, 15, 17, 64], seed: 140, scale: 2)
        let normalized = try x.groupNormBF16(groups: 8, gamma: nil, beta: nil, eps: 1e-6, activation: .silu)
        let rounded = try x.groupNorm(groups: 8, gamma: nil, beta: nil, eps: 1e-6, activation: .silu).roundedToBF16()
        let conv = try Conv2D(weight: Self.random([80, 64, 3, 3], seed: 141, scale: 0.1), bias: Self.random([80], seed: 142),
                              padding: .uniform(1), precision: .bf16, algorithm: .winograd)
        XCTAssertEqual(conv.algorithm, .winograd)
        let residual = Self.random([2, 15, 17, 80], seed: 143)
        XCTAssertEqual(try conv(normalized, residual: residual).scalars, try conv(rounded, residual: residual).scalars)
    }

    /// Which layers take Winograd: bf16 3x3 convolutions with stride 1 and padding 1 and at least 64 channels each
    /// way; never fp32, the portable backend, strides, other paddings or kernels; `direct` on request. A layer gives
    /// the same answer whatever sizes it saw before.
    func testWhichLayersRunWinograd() throws {
        try requireBF16()
        let w = Self.random([64, 64, 3, 3], seed: 150, scale: 0.1)
        // Where oneDNN's direct convolution runs on AMX tiles, automatic never takes Winograd.
        let wide: Conv2D.Algorithm = Conv2D.prefersWinograd(inChannels: 64, outChannels: 64) ? .winograd : .direct
        XCTAssertEqual(Conv2D.prefersWinograd(inChannels: 64, outChannels: 64), !Attention.amxAvailable)
        XCTAssertEqual(try Conv2D(weight: w, bias: nil, padding: .uniform(1), precision: .bf16).algorithm, wide)
        XCTAssertEqual(try Conv2D(weight: w, bias: nil, padding: .uniform(1)).algorithm, .direct)
        XCTAssertEqual(try Conv2D(weight: w, bias: nil, padding: .uniform(1), backend: .portable, algorithm: .winograd).algorithm, .direct)
        XCTAssertEqual(try Conv2D(weight: w, bias: nil, stride: 2, padding: .uniform(1), precision: .bf16).algorithm, .direct)
        XCTAssertEqual(try Conv2D(weight: w, bias: nil, padding: .uniform(0), precision: .bf16).algorithm, .direct)
        XCTAssertEqual(try Conv2D(weight: w, bias: nil, padding: .uniform(1), precision: .bf16, algorithm: .direct).algorithm, .direct)
        XCTAssertEqual(try Conv2D(weight: Self.random([64, 64, 1, 1], seed: 151), bias: nil, precision: .bf16).algorithm, .direct)
        XCTAssertEqual(try Conv2D(weight: Self.random([320, 4, 3, 3], seed: 152), bias: nil, padding: .uniform(1),
                                  precision: .bf16).algorithm, .direct)
        // 32 channels: only on request.
        let narrow = Self.random([32, 32, 3, 3], seed: 153, scale: 0.1)
        XCTAssertEqual(try Conv2D(weight: narrow, bias: nil, padding: .uniform(1), precision: .bf16).algorithm, .direct)
        XCTAssertEqual(try Conv2D(weight: narrow, bias: nil, padding: .uniform(1), precision: .bf16, algorithm: .winograd).algorithm,
                       .winograd)

        let conv = try Conv2D(weight: w, bias: nil, padding: .uniform(1), precision: .bf16, algorithm: .winograd)
        let small = Self.random([1, 3, 5, 64], seed: 154), large = Self.random([2, 48, 40, 64], seed: 155)
        let first = try conv(small)
        _ = try conv(large)
        XCTAssertEqual(try conv(small).scalars, first.scalars)
        XCTAssertThrowsError(try conv(Self.random([1, 4, 4, 63], seed: 156))) {
            XCTAssertTrue(String(describing: $0).contains("64 channels"), "\($0)")
        }
    }
}
