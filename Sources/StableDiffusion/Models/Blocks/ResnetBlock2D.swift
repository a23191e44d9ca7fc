import DiffusionTensor

/// diffusers' `ResnetBlock2D`: GroupNorm-SiLU-Conv twice, with the time embedding added between the
/// convolutions and a (1x1-projected when channels change) shortcut. The shortcut is fused into the second
/// convolution as oneDNN's sum post-op.
final class ResnetBlock2D {
    let norm1: GroupNorm, conv1: Conv2D
    let timeEmbProj: Linear?
    let norm2: GroupNorm, conv2: Conv2D
    let convShortcut: Conv2D?
    let outputScaleFactor: Float
    /// `resnet_time_scale_shift == "scale_shift"`: the time embedding gives a scale and a shift for norm2.
    let scaleShift: Bool

    init(_ r: WeightReader, _ p: String, in i: Int, out o: Int, tembChannels: Int?, groups: Int, eps: Float,
         outputScaleFactor: Float = 1, scaleShift: Bool = false) throws {
        norm1 = try r.groupNorm("\(p).norm1", channels: i, groups: groups, eps: eps)
        conv1 = try r.conv2d("\(p).conv1", in: i, out: o, kernel: 3)
        timeEmbProj = try tembChannels.map { try r.linear("\(p).time_emb_proj", in: $0, out: scaleShift ? 2 * o : o) }
        norm2 = try r.groupNorm("\(p).norm2", channels: o, groups: groups, eps: eps)
        conv2 = try r.conv2d("\(p).conv2", in: o, out: o, kernel: 3)
        convShortcut = i != o ? try r.conv2d("\(p).conv_shortcut", in: i, out: o, kernel: 1) : nil
        self.outputScaleFactor = outputScaleFactor
        self.scaleShift = scaleShift
    }

    /// - Parameter tembAct: SiLU of the time embedding, `[batch, tembChannels]` (computed once per UNet call).
    /// The input is summed into in place when it is the shortcut and the caller hands it over (`consume h`).
    func callAsFunction(_ x: consuming Tensor, tembAct: Tensor?) throws -> Tensor {
        var h = try norm1.then(conv1, x, activation: .silu)
        let (b, c) = (h.shape[0], h.shape[3])
        let shortcut: Tensor
        if let convShortcut { shortcut = try convShortcut(x) } else { shortcut = consume x }
        let out: Tensor
        if let proj = timeEmbProj, let tembAct {
            let t = try proj(tembAct)
            if scaleShift {
                let scale = try t.slice(axis: 1, 0..<c).reshaped([b, 1, 1, c])
                let shift = try t.slice(axis: 1, c..<2 * c).reshaped([b, 1, 1, c])
                h = try norm2(h)
                h = try (h * (scale + 1)) + shift
                out = try conv2(h.silu(), residual: consume shortcut)
            } else {
                out = try norm2.then(conv2, try h + t.reshaped([b, 1, 1, c]), activation: .silu, residual: consume shortcut)
            }
        } else {
            out = try norm2.then(conv2, h, activation: .silu, residual: consume shortcut)
        }
        return outputScaleFactor == 1 ? out : out * (1 / outputScaleFactor)
    }
}
