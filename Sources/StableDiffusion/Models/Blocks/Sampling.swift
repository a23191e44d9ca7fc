import Foundation
import DiffusionTensor

/// diffusers' `Downsample2D` with a convolution: 3x3, stride 2. With `padding == 0` the input is padded
/// on the right and bottom only, which oneDNN takes as asymmetric padding.
func makeDownsampler(_ r: WeightReader, _ p: String, channels c: Int, padding: Int) throws -> Conv2D {
    let pad = padding == 0 ? ConvPadding(top: 0, left: 0, bottom: 1, right: 1) : .uniform(padding)
    return try r.conv2d("\(p).conv", in: c, out: c, kernel: 3, stride: 2, padding: pad)
}

/// diffusers' `Upsample2D` with a convolution: nearest-neighbour 2x (or to `size`), then a 3x3 conv.
struct Upsampler {
    let conv: Conv2D
    init(_ r: WeightReader, _ p: String, channels c: Int) throws {
        conv = try r.conv2d("\(p).conv", in: c, out: c, kernel: 3)
    }
    func callAsFunction(_ x: Tensor, size: (Int, Int)? = nil) throws -> Tensor {
        if let size {
            return try conv(try x.resized(height: size.0, width: size.1, mode: .nearest))
        }
        // A bf16 convolution takes the upsampled values already in bf16 (rounded before copying, the same values).
        return conv.precision == .bf16 ? try conv(try x.upsampledNearest2xBF16()) : try conv(try x.upsampledNearest2x())
    }
}

/// Sinusoidal timestep features (diffusers' `get_timestep_embedding`), computed in fp32 as diffusers does.
func timestepFeatures(_ timesteps: [Float], dim: Int, flipSinToCos: Bool, freqShift: Float) -> Tensor {
    let half = dim / 2
    var out = Tensor(zeros: [timesteps.count, dim])
    out.withUnsafeMutableBufferPointer { p in
        for (row, t) in timesteps.enumerated() {
            for i in 0..<half {
                let exponent = -Float(9.210340371976184) * Float(i) / (Float(half) - freqShift)  // -ln(10000) i / (half - shift)
                let arg = t * expf(exponent)
                let (s, c) = (sinf(arg), cosf(arg))
                p[row * dim + i] = flipSinToCos ? c : s
                p[row * dim + half + i] = flipSinToCos ? s : c
            }
        }
    }
    return out
}
