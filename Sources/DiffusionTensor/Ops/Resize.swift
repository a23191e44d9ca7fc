/// Spatial resizing of NHWC tensors with the semantics of torch's `F.interpolate`
/// (`align_corners=False`, no antialiasing).
public enum ResizeMode: Sendable {
    /// torch "nearest": source index `floor(dst * in / out)`.
    case nearest
    case bilinear
    /// Cubic convolution with a = -0.75, borders clamped, as torch's "bicubic".
    case bicubic
}

extension Tensor {
    /// Per output coordinate, the source indices and weights along one axis.
    private static func taps(mode: ResizeMode, input: Int, output: Int) -> (count: Int, index: [Int], weight: [Float]) {
        let scale = Float(input) / Float(output)
        switch mode {
        case .nearest:
            let idx = (0..<output).map { min(Int((Float($0) * scale).rounded(.down)), input - 1) }
            return (1, idx, [Float](repeating: 1, count: output))
        case .bilinear:
            var idx = [Int](), w = [Float]()
            for o in 0..<output {
                let src = max((Float(o) + 0.5) * scale - 0.5, 0)
                let i0 = Int(src)
                let i1 = i0 + (i0 < input - 1 ? 1 : 0)
                let l1 = src - Float(i0)
                idx += [i0, i1]; w += [1 - l1, l1]
            }
            return (2, idx, w)
        case .bicubic:
            let a: Float = -0.75
            func near(_ x: Float) -> Float { ((a + 2) * x - (a + 3)) * x * x + 1 }
            func far(_ x: Float) -> Float { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
            var idx = [Int](), w = [Float]()
            for o in 0..<output {
                let src = (Float(o) + 0.5) * scale - 0.5
                let f = src.rounded(.down)
                let i = Int(f), t = src - f
                for k in -1...2 { idx.append(min(max(i + k, 0), input - 1)) }
                w += [far(t + 1), near(t), near(1 - t), far(2 - t)]
            }
            return (4, idx, w)
        }
    }

    /// Resizes an NHWC tensor to `height` x `width`.
    public func resized(height: Int, width: Int, mode: ResizeMode) throws -> Tensor {
        guard rank == 4 else { throw TensorError.shapeMismatch("resize expects NHWC, got \(shape)") }
        guard height > 0, width > 0, shape[1] > 0, shape[2] > 0 else {
            throw TensorError.invalidArgument("resize of \(shape) to \(height)x\(width)")
        }
        let (n, ih, iw, c) = (shape[0], shape[1], shape[2], shape[3])
        let ty = Tensor.taps(mode: mode, input: ih, output: height)
        let tx = Tensor.taps(mode: mode, input: iw, output: width)
        var out = Tensor(uninitializedShape: [n, height, width, c])
        let x = unsafePointer
        out.withUnsafeMutableBufferPointer { ob in
            let y = ob.baseAddress!
            Parallel.forRanges(n * height, minChunk: 4) { rows in
                for row in rows {
                    let b = row / height, oy = row % height
                    let xb = x + b * ih * iw * c
                    for ox in 0..<width {
                        let dst = y + ((b * height + oy) * width + ox) * c
                        for j in 0..<c { dst[j] = 0 }
                        for i in 0..<ty.count {
                            let sy = ty.index[oy * ty.count + i], wy = ty.weight[oy * ty.count + i]
                            for k in 0..<tx.count {
                                let sx = tx.index[ox * tx.count + k], wt = wy * tx.weight[ox * tx.count + k]
                                let src = xb + (sy * iw + sx) * c
                                for j in 0..<c { dst[j] += wt * src[j] }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Nearest-neighbour 2x upsampling of an NHWC tensor (the UNet/VAE upsampler).
    public func upsampledNearest2x() throws -> Tensor {
        guard rank == 4 else { throw TensorError.shapeMismatch("upsample expects NHWC, got \(shape)") }
        var out = Tensor(uninitializedShape: [shape[0], 2 * shape[1], 2 * shape[2], shape[3]])
        let x = unsafePointer
        out.withUnsafeMutableBufferPointer { Self.upsampleNearest2x(x, $0.baseAddress!, shape: shape) }
        return out
    }

    /// `upsampledNearest2x()` rounded to bf16, for a bf16 convolution: the input is rounded (a quarter of
    /// the values) and the bf16 values copied, with no fp32 upsampled tensor between.
    public func upsampledNearest2xBF16() throws -> BF16Tensor {
        guard rank == 4 else { throw TensorError.shapeMismatch("upsample expects NHWC, got \(shape)") }
        let rounded = BF16Tensor(rounding: self).buffer
        let out = BF16Buffer(count: 4 * count)
        Self.upsampleNearest2x(UnsafePointer(rounded.pointer), out.pointer, shape: shape)
        return BF16Tensor(shape: [shape[0], 2 * shape[1], 2 * shape[2], shape[3]], buffer: out)
    }

    /// Nearest 2x of NHWC `shape` from `x` into `y`: each pixel copied to a 2x2 block.
    private static func upsampleNearest2x<Element>(_ x: UnsafePointer<Element>, _ y: UnsafeMutablePointer<Element>, shape: [Int]) {
        let (n, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
        Parallel.forRanges(n * h, minChunk: 4) { rows in
            for row in rows {
                let src = x + row * w * c
                let dst0 = y + (2 * row) * 2 * w * c
                for ix in 0..<w {
                    (dst0 + 2 * ix * c).update(from: src + ix * c, count: c)
                    (dst0 + (2 * ix + 1) * c).update(from: src + ix * c, count: c)
                }
                (dst0 + 2 * w * c).update(from: dst0, count: 2 * w * c)
            }
        }
    }
}
