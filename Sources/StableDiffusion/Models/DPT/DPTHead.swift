import Foundation
import DiffusionTensor

/// `DPTDepthEstimationHead`: optional 3x3 projection + ReLU, then conv 3x3 (halving the width), x2 bilinear
/// upsampling (align_corners=True), conv 3x3 to 32 + ReLU, conv 1x1 to 1 + ReLU; the channel is squeezed.
struct DPTDepthHead {
    let projection: Conv2D?
    let conv0: Conv2D, conv2: Conv2D, conv4: Conv2D
    let inIndex: Int

    init(_ r: WeightReader, config c: DPTConfig) throws {
        let f = c.fusionHiddenSize
        projection = c.addProjection ? try r.conv2d("head.projection", in: 256, out: 256, kernel: 3, padding: .uniform(1)) : nil
        conv0 = try r.conv2d("head.head.0", in: f, out: f / 2, kernel: 3, padding: .uniform(1))
        conv2 = try r.conv2d("head.head.2", in: f / 2, out: 32, kernel: 3, padding: .uniform(1))
        conv4 = try r.conv2d("head.head.4", in: 32, out: 1, kernel: 1, padding: .uniform(0))
        inIndex = c.headInIndex
    }

    /// - Returns: `[batch, H, W]`.
    func callAsFunction(_ fused: [Tensor]) throws -> Tensor {
        var x = fused[inIndex < 0 ? fused.count + inIndex : inIndex]
        if let projection { x = try projection(x).dptReLU() }
        x = try conv0(x)
        x = try x.dptResizedBilinearAlignCorners(height: 2 * x.shape[1], width: 2 * x.shape[2])
        x = try conv2(x).dptReLU()
        x = try conv4(x).dptReLU()
        return try x.reshaped([x.shape[0], x.shape[1], x.shape[2]])
    }
}
