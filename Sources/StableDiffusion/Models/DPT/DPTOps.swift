import Foundation
import DiffusionTensor

// Small NHWC operations DPT needs that the tensor layer lacks. ReLU, max-pooling, constant padding,
// align_corners=True bilinear resizing and the kernel==stride transposed convolution belong in
// DiffusionTensor (ReLU as an `Activation` case so convolutions can fuse it); they live here until then.

extension Tensor {
    /// `max(x, 0)` element-wise.
    func dptReLU() -> Tensor {
        var out = self
        out.withUnsafeMutableBufferPointer { p in
            let b = p.baseAddress!
            Parallel.forRanges(p.count, minChunk: 1 << 15) { r in
                for i in r where !(b[i] > 0) { b[i] = b[i].isNaN ? b[i] : 0 }
            }
        }
        return out
    }

    /// `relu(self + other)` for equal shapes (BiT's bottleneck output).
    func dptAddReLU(_ other: Tensor) throws -> Tensor {
        guard shape == other.shape else { throw TensorError.shapeMismatch("add+relu of \(shape) and \(other.shape)") }
        var out = self
        let o = other.unsafePointer
        out.withUnsafeMutableBufferPointer { p in
            let b = p.baseAddress!
            Parallel.forRanges(p.count, minChunk: 1 << 15) { r in
                for i in r {
                    let v = b[i] + o[i]
                    b[i] = v > 0 || v.isNaN ? v : 0
                }
            }
        }
        return out
    }

    /// Pads H and W of an NHWC tensor with `value`.
    func dptPadded(_ p: ConvPadding, value: Float = 0) throws -> Tensor {
        guard rank == 4 else { throw TensorError.shapeMismatch("pad expects NHWC, got \(shape)") }
        if p == .uniform(0) { return self }
        let (n, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
        let oh = h + p.top + p.bottom, ow = w + p.left + p.right
        var out = Tensor(repeating: value, shape: [n, oh, ow, c])
        let x = unsafePointer
        out.withUnsafeMutableBufferPointer { ob in
            let y = ob.baseAddress!
            for b in 0..<n {
                for row in 0..<h {
                    (y + ((b * oh + row + p.top) * ow + p.left) * c).update(from: x + (b * h + row) * w * c, count: w * c)
                }
            }
        }
        return out
    }

    /// `max_pool2d` without padding (pad first with `dptPadded`), floor output size.
    func dptMaxPool(kernel k: Int, stride s: Int) throws -> Tensor {
        guard rank == 4, shape[1] >= k, shape[2] >= k else { throw TensorError.shapeMismatch("max pool \(k)x\(k) of \(shape)") }
        let (n, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
        let oh = (h - k) / s + 1, ow = (w - k) / s + 1
        var out = Tensor(uninitializedShape: [n, oh, ow, c])
        let x = unsafePointer
        out.withUnsafeMutableBufferPointer { ob in
            let y = ob.baseAddress!
            Parallel.forRanges(n * oh, minChunk: 4) { rows in
                for row in rows {
                    let b = row / oh, oy = row % oh
                    for ox in 0..<ow {
                        let dst = y + (row * ow + ox) * c
                        for j in 0..<c { dst[j] = -.infinity }
                        for dy in 0..<k {
                            for dx in 0..<k {
                                let src = x + ((b * h + oy * s + dy) * w + ox * s + dx) * c
                                for j in 0..<c where src[j] > dst[j] || src[j].isNaN { dst[j] = src[j] }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Bilinear resize with `align_corners=True` (torch `interpolate(..., mode="bilinear", align_corners=True)`):
    /// source coordinate `dst * (in - 1) / (out - 1)`, computed in fp32 as torch's CPU kernel does.
    func dptResizedBilinearAlignCorners(height: Int, width: Int) throws -> Tensor {
        guard rank == 4, height > 0, width > 0, shape[1] > 0, shape[2] > 0 else {
            throw TensorError.invalidArgument("align-corners resize of \(shape) to \(height)x\(width)")
        }
        let (n, ih, iw, c) = (shape[0], shape[1], shape[2], shape[3])
        func taps(_ input: Int, _ output: Int) -> [(Int, Int, Float, Float)] {
            let scale: Float = output > 1 ? Float(input - 1) / Float(output - 1) : 0
            return (0..<output).map { o in
                let src = scale * Float(o)
                let i0 = Int(src)
                let i1 = i0 + (i0 < input - 1 ? 1 : 0)
                let l1 = src - Float(i0)
                return (i0, i1, 1 - l1, l1)
            }
        }
        let ty = taps(ih, height), tx = taps(iw, width)
        var out = Tensor(uninitializedShape: [n, height, width, c])
        let x = unsafePointer
        out.withUnsafeMutableBufferPointer { ob in
            let y = ob.baseAddress!
            Parallel.forRanges(n * height, minChunk: 4) { rows in
                for row in rows {
                    let b = row / height, (y0, y1, wy0, wy1) = ty[row % height]
                    let r0 = x + (b * ih + y0) * iw * c, r1 = x + (b * ih + y1) * iw * c
                    for ox in 0..<width {
                        let (x0, x1, wx0, wx1) = tx[ox]
                        let dst = y + (row * width + ox) * c
                        for j in 0..<c {
                            dst[j] = wy0 * (wx0 * r0[x0 * c + j] + wx1 * r0[x1 * c + j])
                                + wy1 * (wx0 * r1[x0 * c + j] + wx1 * r1[x1 * c + j])
                        }
                    }
                }
            }
        }
        return out
    }
}

/// `nn.ConvTranspose2d(c, c, kernel_size=f, stride=f, padding=0)`: each input pixel becomes an f x f block,
/// so it is one matrix product followed by a scatter.
struct DPTConvTranspose {
    let linear: Linear
    let factor: Int, outChannels: Int

    /// - Parameter weight: torch layout `[in, out, f, f]`.
    init(weight: Tensor, bias: Tensor) throws {
        guard weight.rank == 4, weight.shape[2] == weight.shape[3], bias.shape == [weight.shape[1]] else {
            throw TensorError.shapeMismatch("transposed conv weight \(weight.shape), bias \(bias.shape)")
        }
        let (i, o, f) = (weight.shape[0], weight.shape[1], weight.shape[2])
        factor = f; outChannels = o
        // Rows ordered (dy, dx, out) so the product's channel axis is one output block, row-major.
        var m = [Float](repeating: 0, count: f * f * o * i)
        var bb = [Float](repeating: 0, count: f * f * o)
        let w = weight.scalars, bs = bias.scalars
        for dy in 0..<f { for dx in 0..<f { for oc in 0..<o {
            let row = (dy * f + dx) * o + oc
            bb[row] = bs[oc]
            for ic in 0..<i { m[row * i + ic] = w[((ic * o + oc) * f + dy) * f + dx] }
        } } }
        linear = try Linear(weight: Tensor(shape: [f * f * o, i], scalars: m), bias: Tensor(shape: [f * f * o], scalars: bb))
    }

    func callAsFunction(_ x: Tensor) throws -> Tensor {
        let (n, h, w) = (x.shape[0], x.shape[1], x.shape[2])
        let blocks = try linear(x)
        let (f, o) = (factor, outChannels)
        var out = Tensor(uninitializedShape: [n, h * f, w * f, o])
        let src = blocks.unsafePointer
        out.withUnsafeMutableBufferPointer { ob in
            let y = ob.baseAddress!
            for b in 0..<n { for iy in 0..<h { for ix in 0..<w {
                let block = src + ((b * h + iy) * w + ix) * f * f * o
                for dy in 0..<f {
                    let dst = y + ((b * h * f + iy * f + dy) * w * f + ix * f) * o
                    dst.update(from: block + dy * f * o, count: f * o)
                }
            } } }
        }
        return out
    }
}

/// Weight standardisation (BiT's `WeightStandardizedConv2d`): per output channel, subtract the mean and
/// divide by `sqrt(biased variance + eps)` over the (in, kh, kw) elements, as `F.batch_norm(training=True)` does.
func dptStandardizedWeight(_ weight: Tensor, eps: Double) -> Tensor {
    var w = weight
    let o = weight.shape[0], per = weight.count / max(o, 1)
    w.withUnsafeMutableBufferPointer { p in
        for oc in 0..<o {
            let row = p.baseAddress! + oc * per
            var mean = 0.0
            for j in 0..<per { mean += Double(row[j]) }
            mean /= Double(per)
            var variance = 0.0
            for j in 0..<per { let d = Double(row[j]) - mean; variance += d * d }
            variance /= Double(per)
            let inv = 1 / (variance + eps).squareRoot()
            for j in 0..<per { row[j] = Float((Double(row[j]) - mean) * inv) }
        }
    }
    return w
}

/// Folds an inference-mode `BatchNorm2d` that follows a convolution into the convolution's weight and bias.
func dptFoldBatchNorm(weight: Tensor, bias: Tensor?, gamma: Tensor, beta: Tensor, mean: Tensor, variance: Tensor,
                      eps: Double = 1e-5) throws -> (weight: Tensor, bias: Tensor) {
    let o = weight.shape[0], per = weight.count / max(o, 1)
    var w = weight.scalars
    var b = bias?.scalars ?? [Float](repeating: 0, count: o)
    let g = gamma.scalars, be = beta.scalars, m = mean.scalars, v = variance.scalars
    for oc in 0..<o {
        let s = Double(g[oc]) / (Double(v[oc]) + eps).squareRoot()
        for j in 0..<per { w[oc * per + j] = Float(Double(w[oc * per + j]) * s) }
        b[oc] = Float((Double(b[oc]) - Double(m[oc])) * s + Double(be[oc]))
    }
    return (try Tensor(shape: weight.shape, scalars: w), try Tensor(shape: [o], scalars: b))
}
