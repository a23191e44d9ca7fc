import DiffusionTensor
import Foundation
import StableDiffusion

/// The file is read as a LoRA (merged into the tiny SD 1 UNet and text encoder, every weight read
/// back) and as a textual-inversion embedding.
enum AdapterTarget {
    static let bases: [(LoRATarget, SafeTensorsFile)] = {
        let sd1 = TinyModels.url("tiny-sd1")
        return [(.unet, "unet/diffusion_pytorch_model.safetensors"), (.textEncoder, "text_encoder/model.safetensors")].compactMap { target, file in
            (try? SafeTensorsFile(path: sd1.appendingPathComponent(file).path)).map { (target, $0) }
        }
    }()

    static func run(_ data: [UInt8]) throws {
        let url = try ScratchFile.write(data, as: LeadingBytes.isTorch(data) ? "adapter.pt" : "adapter.safetensors")
        _ = try? TextualInversion(file: url).load()
        let adapters = ModelAdapters(loras: [LoRA(file: url, scale: 0.75)])
        for (target, base) in bases {
            let merged = try adapters.mergingLoRAs(into: base, for: target)
            for name in merged.tensorNames { _ = try merged.tensor(name) }
        }
    }
}
