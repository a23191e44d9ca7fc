import CKernels

extension Tensor {
    /// Group normalisation of an NHWC tensor (`[N, H, W, C]`, or `[N, L, C]`), torch semantics:
    /// statistics per sample and per group of `C / groups` consecutive channels, biased variance,
    /// then a per-channel affine transform. `activation` is fused into the write-out (GroupNorm + SiLU
    /// is the resnet block's pattern).
    public func groupNorm(groups: Int, gamma: Tensor?, beta: Tensor?, eps: Float, activation: Activation = .identity) throws -> Tensor {
        var out = Tensor(uninitializedShape: shape)
        let c = shape.last ?? 0
        try out.withUnsafeMutableBufferPointer { ob in
            let y = ob.baseAddress!
            try groupNormRows(groups: groups, gamma: gamma, beta: beta, eps: eps) { x, rows, a, b in
                Self.affineRows(x + rows.lowerBound * c, y + rows.lowerBound * c, rows: rows.count, channels: c,
                                scale: a, shift: b, activation: activation)
            }
        }
        return out
    }

    /// `groupNorm` written straight to bf16: the same fp32 values, rounded as a bf16 layer rounds its
    /// input, without the fp32 tensor in between (a bf16 convolution after a norm takes this).
    public func groupNormBF16(groups: Int, gamma: Tensor?, beta: Tensor?, eps: Float, activation: Activation = .identity) throws -> BF16Tensor {
        let out = BF16Buffer(count: count)
        let c = shape.last ?? 0
        try groupNormRows(groups: groups, gamma: gamma, beta: beta, eps: eps) { x, rows, a, b in
            out.writeRows(rows, width: c) { first, n, block in
                Self.affineRows(x + first * c, block, rows: n, channels: c, scale: a, shift: b, activation: activation)
            }
        }
        return BF16Tensor(shape: shape, buffer: out)
    }

    /// Group norm's statistics, per sample: hands `write` the input, a range of rows (pixels, counted from
    /// the tensor's start) and the per-channel scale and shift that normalise them, in parallel ranges.
    private func groupNormRows(groups: Int, gamma: Tensor?, beta: Tensor?, eps: Float,
                               write: (UnsafePointer<Float>, Range<Int>, UnsafePointer<Float>, UnsafePointer<Float>) -> Void) throws {
        guard rank >= 2 else { throw TensorError.shapeMismatch("groupNorm needs [N, ..., C], got \(shape)") }
        let c = shape[rank - 1]
        guard groups > 0, c % groups == 0 else {
            throw TensorError.invalidArgument("groupNorm: \(c) channels are not divisible into \(groups) groups")
        }
        if let gamma, gamma.shape != [c] { throw TensorError.shapeMismatch("groupNorm gamma must be [\(c)], got \(gamma.shape)") }
        if let beta, beta.shape != [c] { throw TensorError.shapeMismatch("groupNorm beta must be [\(c)], got \(beta.shape)") }
        let n = shape[0]
        let pixels = count / max(n * c, 1)
        let cpg = c / groups
        let x = unsafePointer
        let g = gamma?.unsafePointer, bt = beta?.unsafePointer
        // Per-sample statistics, two-pass (mean, then squared deviations) for accuracy: per-channel sums
        // over runs of 32 pixels in Float (short enough to stay exact to ~1e-7), accumulated in Double per
        // parallel chunk, then combined per group.
        let chunks = max(1, min(Parallel.workerCount * 4, pixels / 64))
        let chunkSize = (pixels + chunks - 1) / chunks
        var sums = [Double](repeating: 0, count: chunks * c)
        var scale = [Float](repeating: 0, count: c)
        var shift = [Float](repeating: 0, count: c)
        var centre = [Float](repeating: 0, count: c)
        for s in 0..<n {
            let xs = x + s * pixels * c
            for pass in 0..<2 {
                sums.withUnsafeMutableBufferPointer { sp in centre.withUnsafeBufferPointer { cp in
                    let sp = sp.baseAddress!, mean = cp.baseAddress!
                    Parallel.forEach(chunks) { ch in
                        Self.channelSums(xs, channels: c, from: ch * chunkSize, to: min(pixels, (ch + 1) * chunkSize),
                                         centre: mean, squared: pass == 1, into: sp + ch * c)
                    }
                } }
                for gi in 0..<groups {
                    var t = 0.0
                    for ch in 0..<chunks { for j in gi * cpg..<(gi + 1) * cpg { t += sums[ch * c + j] } }
                    let m = t / Double(pixels * cpg)
                    if pass == 0 {
                        for j in gi * cpg..<(gi + 1) * cpg { centre[j] = Float(m) }
                    } else {
                        // Variance around the Float mean; its rounding (<1e-7 relative) is negligible.
                        let rstd = 1 / (m + Double(eps)).squareRoot()
                        for j in gi * cpg..<(gi + 1) * cpg {
                            let gj = Double(g?[j] ?? 1)
                            scale[j] = Float(rstd * gj)
                            shift[j] = Float(Double(bt?[j] ?? 0) - Double(centre[j]) * rstd * gj)
                        }
                    }
                }
            }
            scale.withUnsafeBufferPointer { scp in shift.withUnsafeBufferPointer { shp in
                let a = scp.baseAddress!, b = shp.baseAddress!
                Parallel.forRanges(pixels, minChunk: 64) { r in
                    write(x, (s * pixels + r.lowerBound)..<(s * pixels + r.upperBound), a, b)
                }
            } }
        }
    }

    /// `y = activation(x * scale + shift)` per channel, for `rows` rows of `channels`.
    @inline(__always)
    static func affineRows(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, channels c: Int,
                           scale a: UnsafePointer<Float>, shift b: UnsafePointer<Float>, activation: Activation) {
        // The C kernel knows identity (0) and the activations with a native code; others take the loop below.
        if KernelDispatch.native, activation == .identity || activation.nativeKind != nil,
           sdk_affine_rows(x, y, Int64(rows), Int64(c), a, b, activation.nativeKind ?? 0) != 0 { return }
        for p in 0..<rows {
            let xi = x + p * c, yo = y + p * c
            for j in 0..<c { yo[j] = xi[j] * a[j] + b[j] }
            activation.apply(inPlace: yo, count: c, serial: true)
        }
    }

    /// Adds, for pixels `from..<to`, each channel's value (or squared deviation from `centre`) into
    /// `out[channel]` (Double), summing runs of 32 pixels in Float first.
    @inline(__always)
    static func channelSums(_ x: UnsafePointer<Float>, channels c: Int, from: Int, to: Int, centre: UnsafePointer<Float>,
                            squared: Bool, into out: UnsafeMutablePointer<Double>) {
        if KernelDispatch.native,
           sdk_channel_sums(x, Int64(c), Int64(from), Int64(to), centre, squared ? 1 : 0, out) != 0 { return }
        for j in 0..<c { out[j] = 0 }
        if from >= to { return }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: c) { accBuffer in
            let acc = accBuffer.baseAddress!
            var p = from
            while p < to {
                let end = min(to, p + 32)
                for j in 0..<c { acc[j] = 0 }
                for q in p..<end {
                    let row = x + q * c
                    if squared {
                        for j in 0..<c { let d = row[j] - centre[j]; acc[j] += d * d }
                    } else {
                        for j in 0..<c { acc[j] += row[j] }
                    }
                }
                for j in 0..<c { out[j] += Double(acc[j]) }
                p = end
            }
        }
    }

    /// Layer normalisation over the last dimension (torch `layer_norm` with `normalized_shape = [C]`).
    public func layerNorm(gamma: Tensor?, beta: Tensor?, eps: Float) throws -> Tensor {
        let c = try layerNormChannels(gamma: gamma, beta: beta)
        var out = Tensor(uninitializedShape: shape)
        let x = unsafePointer
        let g = gamma?.unsafePointer, b = beta?.unsafePointer
        out.withUnsafeMutableBufferPointer { ob in
            let y = ob.baseAddress!
            Parallel.forRanges(count / max(c, 1), minChunk: 16) { r in
                Self.layerNormRows(x + r.lowerBound * c, y + r.lowerBound * c, rows: r.count, channels: c, gamma: g, beta: b, eps: eps)
            }
        }
        return out
    }

    /// `layerNorm` written straight to bf16: the same fp32 values, rounded as a bf16 layer rounds its input,
    /// without the fp32 tensor in between (the bf16 projections after a transformer block's norms take this).
    public func layerNormBF16(gamma: Tensor?, beta: Tensor?, eps: Float) throws -> BF16Tensor {
        let c = try layerNormChannels(gamma: gamma, beta: beta)
        let out = BF16Buffer(count: count)
        let x = unsafePointer
        let g = gamma?.unsafePointer, b = beta?.unsafePointer
        Parallel.forRanges(count / max(c, 1), minChunk: 16) { r in
            out.writeRows(r, width: c) { first, n, block in
                Self.layerNormRows(x + first * c, block, rows: n, channels: c, gamma: g, beta: b, eps: eps)
            }
        }
        return BF16Tensor(shape: shape, buffer: out)
    }

    private func layerNormChannels(gamma: Tensor?, beta: Tensor?) throws -> Int {
        guard rank >= 1 else { throw TensorError.shapeMismatch("layerNorm needs rank >= 1, got \(shape)") }
        let c = shape[rank - 1]
        if let gamma, gamma.shape != [c] { throw TensorError.shapeMismatch("layerNorm gamma must be [\(c)], got \(gamma.shape)") }
        if let beta, beta.shape != [c] { throw TensorError.shapeMismatch("layerNorm beta must be [\(c)], got \(beta.shape)") }
        return c
    }

    /// `rows` rows of `channels` normalised (mean and variance in Double) from `x` into `y`.
    static func layerNormRows(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, channels c: Int,
                              gamma g: UnsafePointer<Float>?, beta b: UnsafePointer<Float>?, eps: Float) {
        if KernelDispatch.native, sdk_layer_norm_rows(x, y, Int64(rows), Int64(c), g, b, eps) != 0 { return }
        for i in 0..<rows {
            let xi = x + i * c, yo = y + i * c
            var sum = 0.0
            for j in 0..<c { sum += Double(xi[j]) }
            let mean = sum / Double(c)
            var sq = 0.0
            for j in 0..<c { let d = Double(xi[j]) - mean; sq += d * d }
            let rstd = Float(1 / (sq / Double(c) + Double(eps)).squareRoot())
            let m = Float(mean)
            for j in 0..<c { yo[j] = (xi[j] - m) * rstd * (g?[j] ?? 1) + (b?[j] ?? 0) }
        }
    }
}
