import Foundation
import StableDiffusion

/// One JSON file read as each config the engine loads, as diffusers/transformers files would be.
enum ConfigTarget {
    static func run(_ data: [UInt8]) throws {
        let json = Data(data)
        if let object = (try? JSONValue.parse(json, file: "config.json"))?.objectValue {
            _ = try? UNet2DConditionConfig(ConfigReader(file: "unet/config.json", values: object))
            _ = try? AutoencoderKLConfig(ConfigReader(file: "vae/config.json", values: object))
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
