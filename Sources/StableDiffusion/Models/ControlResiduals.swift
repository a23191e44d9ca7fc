import DiffusionTensor

/// What ControlNets add to a UNet call: one tensor per skip connection of the UNet's down path (the
/// `conv_in` output, every down-block resnet and downsampler output, in order) and one for the mid block's
/// output. Several ControlNets' residuals are summed (diffusers' `MultiControlNetModel`).
public struct ControlResiduals: Sendable {
    public var down: [Tensor]
    public var middle: Tensor

    public init(down: [Tensor], middle: Tensor) {
        self.down = down
        self.middle = middle
    }

    /// Element-wise sum with another ControlNet's residuals for the same UNet.
    func adding(_ other: ControlResiduals) throws -> ControlResiduals {
        guard other.down.count == down.count else {
            throw TensorError.shapeMismatch("ControlNets give \(down.count) and \(other.down.count) residuals; they must be for the same UNet layout")
        }
        return ControlResiduals(down: try zip(down, other.down).map { try $0 + $1 }, middle: try middle + other.middle)
    }

    /// The residuals with a zero block of `batch` samples before them: the unconditional half of a
    /// guidance batch in guess mode, where only the conditional half goes through the ControlNet.
    func prependingZeros(batch: Int) throws -> ControlResiduals {
        func pad(_ t: Tensor) throws -> Tensor {
            try Tensor.concatenate([Tensor(zeros: [batch] + t.shape.dropFirst()), t], axis: 0)
        }
        return ControlResiduals(down: try down.map(pad), middle: try pad(middle))
    }

    /// Checks the residuals against the UNet's own skip tensors and mid-block input, naming the first mismatch.
    func validate(against skips: [Tensor], middle h: Tensor) throws {
        guard down.count == skips.count else {
            throw TensorError.shapeMismatch("ControlNet gives \(down.count) down residuals but the UNet has \(skips.count) skip connections (a ControlNet for another base model?)")
        }
        for (i, (r, s)) in zip(down, skips).enumerated() where r.shape != s.shape {
            throw TensorError.shapeMismatch("ControlNet down residual \(i) has shape \(r.shape) but the UNet's skip has \(s.shape) (a ControlNet for another base model?)")
        }
        guard middle.shape == h.shape else {
            throw TensorError.shapeMismatch("ControlNet mid residual has shape \(middle.shape) but the UNet's mid block gives \(h.shape)")
        }
    }
}
