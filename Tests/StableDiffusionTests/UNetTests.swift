import Foundation
import XCTest
import StableDiffusion

/// UNet2DConditionModel against diffusers on small random models (Scripts/reference/gen_model_fixtures.py).
final class UNetTests: XCTestCase {
    func runCase(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let dir = try FixturePaths.url("models/\(name)")
        let config = try UNet2DConditionConfig.load(dir.appendingPathComponent("config.json"))
        let unet = try UNet2DConditionModel(config: config, weights: SafeTensorsFile(path: dir.appendingPathComponent("weights.safetensors").path))
        let io = try SafeTensorsFile(path: dir.appendingPathComponent("io.safetensors").path)
        let labels = try io.info("class_labels") != nil ? io.tensor("class_labels").scalars : nil
        let out = try unet(sample: io.tensor("sample"), timesteps: io.tensor("timestep").scalars,
                           encoderHiddenStates: io.tensor("encoder_hidden_states"), classLabels: labels)
        assertClose(out, try io.tensor("output"), tolerance: 1e-4, name, file: file, line: line)
    }

    func testSD1Style() throws { try runCase("unet_sd1") }
    /// Per-block heads, linear projections, upcast attention, freq shift, sin/cos order, right/bottom
    /// downsampling pad, scale-shift time embedding, two transformer layers per block.
    func testSD2Style() throws { try runCase("unet_sd2") }
    /// 9 input channels, two layers per block, odd latent size (upsample to the skip's size), mid scale factor.
    func testInpaintingStyle() throws { try runCase("unet_inpaint9") }
    /// 7 input channels, class-embedding table (noise level), only_cross_attention per block.
    func testUpscalerStyle() throws { try runCase("unet_upscaler") }
    /// Timestep class embeddings, no mid block, centred input, cross-attention-only transformers.
    func testTimestepClassEmbeddingWithoutMidBlock() throws { try runCase("unet_classts_nomid") }

    func testMissingClassLabelsAndBadShapesAreErrors() throws {
        let dir = try FixturePaths.url("models/unet_upscaler")
        let unet = try UNet2DConditionModel(config: UNet2DConditionConfig.load(dir.appendingPathComponent("config.json")),
                                            weights: SafeTensorsFile(path: dir.appendingPathComponent("weights.safetensors").path))
        let ctx = Tensor(zeros: [1, 3, 16])
        XCTAssertThrowsError(try unet(sample: Tensor(zeros: [1, 8, 8, 7]), timesteps: [1], encoderHiddenStates: ctx))
        XCTAssertThrowsError(try unet(sample: Tensor(zeros: [1, 8, 8, 7]), timesteps: [1], encoderHiddenStates: ctx, classLabels: [50]))
        XCTAssertThrowsError(try unet(sample: Tensor(zeros: [1, 8, 8, 4]), timesteps: [1], encoderHiddenStates: ctx, classLabels: [1]))
        XCTAssertThrowsError(try unet(sample: Tensor(zeros: [1, 8, 8, 7]), timesteps: [1, 2, 3], encoderHiddenStates: ctx, classLabels: [1]))
    }

    func testWrongOrMissingWeightsAreNamed() throws {
        let dir = try FixturePaths.url("models/unet_sd1")
        let config = try UNet2DConditionConfig.load(dir.appendingPathComponent("config.json"))
        var tensors = try SafeTensorsFile(path: dir.appendingPathComponent("weights.safetensors").path).allTensors()
        tensors["extra.weight"] = Tensor(zeros: [1])
        XCTAssertThrowsError(try UNet2DConditionModel(config: config, weights: TensorDictionary(tensors))) {
            XCTAssertTrue("\($0)".contains("extra.weight"), "\($0)")
        }
        tensors["extra.weight"] = nil
        tensors["conv_in.weight"] = nil
        XCTAssertThrowsError(try UNet2DConditionModel(config: config, weights: TensorDictionary(tensors))) {
            XCTAssertTrue("\($0)".contains("conv_in.weight"), "\($0)")
        }
        tensors["conv_in.weight"] = Tensor(zeros: [32, 4, 1, 1])
        XCTAssertThrowsError(try UNet2DConditionModel(config: config, weights: TensorDictionary(tensors))) {
            XCTAssertTrue("\($0)".contains("conv_in.weight"), "\($0)")
        }
    }

    func testConfigErrorsNameTheKey() throws {
        func config(_ json: String) throws -> UNet2DConditionConfig {
            try UNet2DConditionConfig(ConfigReader(file: "unet/config.json", data: Data(json.utf8)))
        }
        let bad: [(String, String)] = [
            (#"{"down_block_types": ["CrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D", "DownBlock2D", "DownBlock2D"]}"#, "down_block_types"),
            (#"{"act_fn": "gelu"}"#, "act_fn"),
            (#"{"addition_embed_type": "text"}"#, "addition_embed_type"),
            (#"{"attention_head_dim": [8, 8]}"#, "attention_head_dim"),
            (#"{"layers_per_block": "two"}"#, "layers_per_block"),
            (#"{"some_future_option": 3}"#, "some_future_option"),
            (#"{"class_embed_type": "projection"}"#, "class_embed_type"),
            (#"{"resnet_time_scale_shift": "ada_group"}"#, "resnet_time_scale_shift"),
            (#"{"norm_num_groups": 7}"#, "norm_num_groups"),
            ("{not json", ""),
        ]
        for (json, key) in bad {
            XCTAssertThrowsError(try config(json), json) { error in
                guard let e = error as? ModelConfigError else { return XCTFail("\(error)") }
                XCTAssertEqual(e.key, key, json)
                XCTAssertEqual(e.file, "unet/config.json")
            }
        }
        XCTAssertEqual(try config("{}").attentionHeads, [8, 8, 8, 8])
    }

    /// Every real UNet config builds and strictly loads a state dict with diffusers' names and shapes.
    func testReferenceConfigsBuildAndLoad() throws {
        let refs = try FixturePaths.url("manifests")
        let shared = try ReferenceConfigs.root
        for repo in ReferenceConfigs.repositories {
            let configURL = shared.appendingPathComponent("\(repo)/unet/config.json")
            let config = try UNet2DConditionConfig.load(configURL)
            let source = try ManifestSource(manifest: refs.appendingPathComponent("\(repo)-unet.json"))
            XCTAssertNoThrow(try UNet2DConditionModel(config: config, weights: source), repo)
        }
    }
}

/// The real model configs (Fixtures/reference-configs: the UNet and VAE configs of the real repositories).
enum ReferenceConfigs {
    static let repositories = [
        "CompVis-stable-diffusion-v1-4", "runwayml-stable-diffusion-v1-5", "runwayml-stable-diffusion-inpainting",
        "stabilityai-stable-diffusion-2-1", "stabilityai-stable-diffusion-2-1-base", "stabilityai-stable-diffusion-2-inpainting",
        "stabilityai-stable-diffusion-2-depth", "stabilityai-stable-diffusion-x4-upscaler",
    ]
    static var root: URL {
        get throws { try FixturePaths.url("reference-configs") }
    }
}
