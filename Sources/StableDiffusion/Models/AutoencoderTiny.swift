import Foundation
import DiffusionTensor

/// diffusers' `AutoencoderTinyBlock`: `relu(conv(relu(conv(relu(conv(x))))) + skip(x))`, the skip a 1x1
/// convolution when the widths differ.
struct TinyBlock {
    let conv0: Conv2D, conv2: Conv2D, conv4: Conv2D
    let skip: Conv2D?

    init(_ r: WeightReader, _ p: String, in i: Int, out o: Int) throws {
        conv0 = try r.conv2d("\(p).conv.0", in: i, out: o, kernel: 3)
        conv2 = try r.conv2d("\(p).conv.2", in: o, out: o, kernel: 3)
        conv4 = try r.conv2d("\(p).conv.4", in: o, out: o, kernel: 3)
        skip = i == o ? nil : try r.conv2d("\(p).skip", in: i, out: o, kernel: 1, bias: false)
    }

    func callAsFunction(_ x: Tensor) throws -> Tensor {
        let h = try conv2(try conv0(x, activation: .relu), activation: .relu)
        let shortcut = try skip.map { try $0(x) } ?? x
        return try conv4(h, residual: shortcut, activation: .relu)
    }
}

/// diffusers' `AutoencoderTiny` (TAESD / TAESDXL, about 2.4 M parameters): plain convolutions and ReLU,
/// a deterministic encoder (no distribution) and a decoder that clamps its input with `tanh(x/3)*3`.
/// About 10x fewer FLOPs than `AutoencoderKL`: for fast decodes and live previews.
public final class AutoencoderTiny: LatentAutoencoder, @unchecked Sendable {
    public let config: AutoencoderTinyConfig
    /// The encoder's layers in `encoder.layers.N` order; nil when loaded without the encoder.
    private let encoder: [Layer]?
    private let decoder: [Layer]

    enum Layer {
        case conv(Conv2D, Activation)
        case block(TinyBlock)
        case upsample
    }

    public var hasEncoder: Bool { encoder != nil }

    /// Loads `encoder.layers.*` / `decoder.layers.*` strictly: missing or mis-shaped tensors are errors naming them.
    public init(config c: AutoencoderTinyConfig, weights: any TensorSource, includeEncoder: Bool = true,
                precision: ComputePrecision = .fp32) throws {
        config = c
        let r = WeightReader(weights, precision: precision)
        var index = 0
        func next() -> String { defer { index += 1 }; return "\(index)" }
        if includeEncoder {
            var layers: [Layer] = []
            for (i, blocks) in c.numEncoderBlocks.enumerated() {
                let ch = c.encoderBlockOutChannels[i]
                let p = "encoder.layers." + next()
                layers.append(.conv(i == 0 ? try r.conv2d(p, in: c.inChannels, out: ch, kernel: 3)
                                           : try r.conv2d(p, in: ch, out: ch, kernel: 3, stride: 2, bias: false), .identity))
                for _ in 0..<blocks { layers.append(.block(try TinyBlock(r, "encoder.layers." + next(), in: ch, out: ch))) }
            }
            layers.append(.conv(try r.conv2d("encoder.layers." + next(), in: c.encoderBlockOutChannels.last!, out: c.latentChannels, kernel: 3), .identity))
            encoder = layers
        } else {
            encoder = nil
        }
        index = 0
        // decoder.layers: conv, ReLU (index 1, no weights), then per level its blocks, an upsample (not the
        // last level) and a conv (bias only on the last).
        var layers: [Layer] = [.conv(try r.conv2d("decoder.layers." + next(), in: c.latentChannels, out: c.decoderBlockOutChannels[0], kernel: 3), .relu)]
        _ = next()
        let n = c.numDecoderBlocks.count
        for (i, blocks) in c.numDecoderBlocks.enumerated() {
            let ch = c.decoderBlockOutChannels[i]
            for _ in 0..<blocks { layers.append(.block(try TinyBlock(r, "decoder.layers." + next(), in: ch, out: ch))) }
            let last = i == n - 1
            if !last { layers.append(.upsample); _ = next() }
            layers.append(.conv(try r.conv2d("decoder.layers." + next(), in: ch, out: last ? c.outChannels : ch, kernel: 3, bias: last), .identity))
        }
        decoder = layers
        try r.requireAllUsed(ignoring: includeEncoder ? [] : ["encoder."])
        r.finishLoading()
    }

    private func run(_ layers: [Layer], _ x: Tensor) throws -> Tensor {
        var h = x
        for layer in layers {
            switch layer {
            case .conv(let conv, let activation): h = try conv(h, activation: activation)
            case .block(let block): h = try block(h)
            case .upsample: h = try h.upsampledNearest2x()
            }
        }
        return h
    }

    /// The encoder on images in [-1, 1] (it reads them as `(x + 1) / 2`): latents, unscaled.
    public func encode(_ images: Tensor) throws -> Tensor {
        guard let encoder else { throw TensorError.invalidArgument("this AutoencoderTiny was loaded without its encoder") }
        guard images.rank == 4, images.shape[3] == config.inChannels else {
            throw TensorError.shapeMismatch("tiny VAE encoder expects NHWC images with \(config.inChannels) channels, got \(images.shape)")
        }
        return try run(encoder, images.scaled(by: 0.5, adding: 0.5))
    }

    public func encodeLatents(_ images: Tensor) throws -> LatentEncoding { .latents(try encode(images)) }

    /// `tanh(x / m) * m`, the decoder, then `2 y - 1`: images nominally in [-1, 1].
    public func decode(_ latents: Tensor) throws -> Tensor {
        guard latents.rank == 4, latents.shape[3] == config.latentChannels else {
            throw TensorError.shapeMismatch("tiny VAE decoder expects NHWC latents with \(config.latentChannels) channels, got \(latents.shape)")
        }
        let m = config.latentMagnitude
        var clamped = latents
        clamped.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] = tanhf(p[i] / m) * m } }
        return try run(decoder, clamped).scaled(by: 2, adding: -1)
    }

    /// The tiny decoder's activations are 64 channels at full resolution, small enough to decode whole.
    public func decodeTiled(_ latents: Tensor, tilePixels: Int) throws -> Tensor { try decode(latents) }
}
