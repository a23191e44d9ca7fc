import Foundation
import StableDiffusion

/// One JSON file read as each config the engine loads, as diffusers/transformers files would be.
enum ConfigTarget {
    static let defaultUNet = try? UNet2DConditionConfig(ConfigReader(file: "unet/config.json", values: [:]))
    static let defaultVAE = try? AutoencoderKLConfig(ConfigReader(file: "vae/config.json", values: [:]))

    static func run(_ data: [UInt8]) throws {
        let json = Data(data)
        if let object = (try? JSONValue.parse(json, file: "config.json"))?.objectValue {
            let unet = try? UNet2DConditionConfig(ConfigReader(file: "unet/config.json", values: object))
            let vae = try? AutoencoderKLConfig(ConfigReader(file: "vae/config.json", values: object))
            // What pipelines derive from accepted configs must not trap either, paired with the defaults.
            for u in [unet, defaultUNet].compactMap({ $0 }) {
                for v in [vae, defaultVAE].compactMap({ $0 }) {
                    precondition(v.scaleFactor > 0 && StableDiffusionComponents.defaultImageSide(unet: u, vae: v) > 0,
                                 "non-positive image size from accepted configs")
                }
            }
        }
        _ = try? CLIPTextConfig(jsonData: json)
        _ = try? DPTConfig(jsonData: json)
        _ = try? ModelIndex(contentsOf: try ScratchFile.write(data, as: "model_index.json"))
        let scheduler = try SchedulerConfig(jsonData: json, source: "scheduler_config.json")
        if var s = try? Schedulers.make(config: scheduler) { try? s.setTimesteps(25) }
        for kind in SchedulerKind.allCases {
            guard var s = try? Schedulers.make(kind, config: scheduler) else { continue }
            for steps in [1, 7] { try? s.setTimesteps(steps) }
        }
    }
}
