import DiffusionTensor
import Foundation
import StableDiffusion

enum ImageTargets {
    /// What `--image`/`--mask` files and uploaded pictures go through.
    static func image(_ data: [UInt8]) throws {
        _ = ImageFormat.sniff(data)
        _ = try? PNGCodec.textChunks(data)
        _ = try? PNGCodec.decodeGray16(data, file: "input.png")
        let image = try Image.decode(data: data, file: "input")
        _ = image.toRGB()
        _ = image.toGrayscale()
    }

    /// `--depth-map FILE`: the format follows the extension, chosen here from the leading bytes.
    static func depthMap(_ data: [UInt8]) throws {
        let ext = LeadingBytes.isNPY(data) ? "npy" : LeadingBytes.isPNG(data) ? "png" : LeadingBytes.isTorch(data) ? "pt" : "safetensors"
        let url = try ScratchFile.write(data, as: "depth.\(ext)")
        _ = try DepthMapFile.load(path: url.path)
    }
}
