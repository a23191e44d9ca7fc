import Foundation
import StableDiffusion
import XCTest

/// Weight-file choice as diffusers makes it: sharded variant names (current and legacy), and the plain
/// weights for a component that has no variant files.
final class WeightFilesTests: XCTestCase {
    /// tiny-sd1 with the UNet's weights split into two fp16 shards under `indexName`, and no variant
    /// files for the other components.
    func folder(indexName: String, shardStem: String) throws -> URL {
        let dir = try temporaryFolder(self)
        let fm = FileManager.default
        for item in ["model_index.json", "vae", "text_encoder", "tokenizer", "scheduler"] {
            try fm.createSymbolicLink(at: dir.appendingPathComponent(item), withDestinationURL: TinyModels.sd1.appendingPathComponent(item))
        }
        let unet = dir.appendingPathComponent("unet")
        try fm.createDirectory(at: unet, withIntermediateDirectories: true)
        try fm.copyItem(at: TinyModels.sd1.appendingPathComponent("unet/config.json"), to: unet.appendingPathComponent("config.json"))
        let tensors = try SafeTensorsFile(path: TinyModels.sd1.appendingPathComponent("unet/diffusion_pytorch_model.safetensors").path).allTensors()
        let names = tensors.keys.sorted()
        var map: [String: String] = [:]
        for (part, slice) in [names[..<(names.count / 2)], names[(names.count / 2)...]].enumerated() {
            let file = "\(shardStem)-0000\(part + 1)-of-00002.safetensors"
            try SafeTensorsWriter.write(slice.map { ($0, tensors[$0]!, .float16) }, to: unet.appendingPathComponent(file).path)
            for n in slice { map[n] = file }
        }
        let index = try JSONSerialization.data(withJSONObject: ["metadata": ["total_size": 0], "weight_map": map])
        try index.write(to: unet.appendingPathComponent(indexName))
        return dir
    }

    func testShardedVariantNamesAndPlainFallback() throws {
        var options = GenerationOptions(prompt: "a red cube")
        options.numInferenceSteps = 2
        options.height = 32
        options.width = 32
        options.seed = 5
        let reference = try StableDiffusionPipeline(components: StableDiffusionComponents(directory: TinyModels.sd1))(options)
        for (index, stem) in [("diffusion_pytorch_model.safetensors.index.fp16.json", "diffusion_pytorch_model.fp16"),
                              ("diffusion_pytorch_model.fp16.safetensors.index.json", "diffusion_pytorch_model.fp16")] {
            let dir = try folder(indexName: index, shardStem: stem)
            // The text encoder and VAE have no fp16 files: their plain weights load, as in diffusers.
            let c = try StableDiffusionComponents(directory: dir, variant: "fp16")
            let image = try StableDiffusionPipeline(components: c)(options)
            XCTAssertEqual(image.rgb8(0), reference.rgb8(0), index)
        }
        // Without the variant, a folder whose UNet only has variant shards has no UNet weights: named.
        let dir = try folder(indexName: "diffusion_pytorch_model.safetensors.index.fp16.json", shardStem: "diffusion_pytorch_model.fp16")
        XCTAssertThrowsError(try StableDiffusionComponents(directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("unet") && "\(error)".contains("no weights found"), "\(error)")
        }
    }
}
