import DiffusionTensor
import Foundation
import StableDiffusion

/// A single-file checkpoint, detected against the bundled configs, then read with the tiny SD 1 configs
/// (`--config`), converting every UNet, VAE and text-encoder tensor the layout maps.
enum SingleFileTarget {
    static func run(_ data: [UInt8]) throws {
        let isSafeTensors = data.count >= 9 && data[8] == UInt8(ascii: "{")
        let url = try ScratchFile.write(data, as: isSafeTensors ? "model.safetensors" : "model.ckpt")
        if let detected = try? SingleFileModel(url: url) { convert(detected) }
        convert(try SingleFileModel(url: url, configDirectory: TinyModels.url("tiny-sd1")))
    }

    static func convert(_ model: SingleFileModel) {
        let sources: [RenamedTensorSource?] = [
            (try? UNet2DConditionConfig.load(model.configs.unetConfig)).flatMap { try? model.converter.unet($0) },
            (try? AutoencoderKLConfig.load(model.configs.vaeConfig)).flatMap { try? model.converter.vae($0) },
            (try? CLIPTextConfig.load(from: model.configs.textEncoderConfig.appendingPathComponent("config.json")))
                .flatMap { try? model.converter.textEncoder($0) },
        ]
        for source in sources.compactMap({ $0 }) {
            for name in source.tensorNames { _ = try? source.tensor(name) }
        }
    }
}
