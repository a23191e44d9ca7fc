import Foundation
import XCTest
import DiffusionTensor
import StableDiffusion

/// Names and shapes only: real-size checkpoints described by manifests, no weights.
struct ShapeOnlySource: TensorSource {
    let shapes: [String: [Int]]
    var sourceDescription: String
    var tensorNames: [String] { shapes.keys.sorted() }
    func shape(of name: String) -> [Int]? { shapes[name] }
    func tensor(_ name: String) throws -> Tensor { throw TensorError.badFile(file: sourceDescription, detail: "shape-only source: \(name)") }
}

/// A manifest of a real-size original checkpoint (Scripts/reference/gen_single_file_manifests.py).
struct CheckpointManifest {
    let name: String
    let globalStep: Int?
    let tensors: [String: [Int]]
    let diffusers: [String: [String: [Int]]]

    init(_ name: String) throws {
        self.name = name
        let url = try FixturePaths.url("single_file/manifests/\(name).json")
        let root = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any] ?? [:]
        globalStep = root["global_step"] as? Int
        tensors = (root["tensors"] as? [String: [Int]]) ?? [:]
        diffusers = (root["diffusers"] as? [String: [String: [Int]]]) ?? [:]
    }

    func detect(predictionType: String? = nil) throws -> SingleFileDetection {
        try SingleFileDetector.detect(shapes: tensors, globalStep: globalStep, predictionType: predictionType, file: name)
    }
}

final class SingleFileDetectionTests: XCTestCase {
    func testRealSizeCheckpointsAreDetected() throws {
        let expected: [(String, SingleFileModelKind, String, String)] = [
            ("sd15", .sd1, "runwayml-stable-diffusion-v1-5", "epsilon"),
            ("sd21-768v", .sd2, "stabilityai-stable-diffusion-2-1", "v_prediction"),
            ("sd2-512-base", .sd2, "stabilityai-stable-diffusion-2-1-base", "epsilon"),
            ("sd15-inpainting", .sd1Inpainting, "runwayml-stable-diffusion-inpainting", "epsilon"),
            ("sd2-inpainting", .sd2Inpainting, "stabilityai-stable-diffusion-2-inpainting", "epsilon"),
            ("sd2-depth", .sd2Depth, "stabilityai-stable-diffusion-2-depth", "epsilon"),
            ("x4-upscaler", .x4Upscaler, "stabilityai-stable-diffusion-x4-upscaler", "epsilon"),
            ("sdxl-base", .sdxl, "stabilityai-stable-diffusion-xl-base-1.0", "epsilon"),
            ("sdxl-refiner", .sdxlRefiner, "stabilityai-stable-diffusion-xl-refiner-1.0", "epsilon"),
            ("sdxl-inpainting", .sdxlInpainting, "diffusers-stable-diffusion-xl-1.0-inpainting-0.1", "epsilon"),
        ]
        for (name, kind, config, prediction) in expected {
            let d = try CheckpointManifest(name).detect()
            XCTAssertEqual(d.kind, kind, name)
            XCTAssertEqual(d.configName, config, name)
            XCTAssertEqual(d.predictionType, prediction, name)
            XCTAssertFalse(d.usesEMA, name)
            XCTAssertNoThrow(try DiffusersConfigFolder.bundled(config), name)
        }
    }

    /// SD 2 768-v and 512-base files have the same tensors: the prediction type picks the config pair.
    func testSD2PredictionTypeOverridePicksTheConfigs() throws {
        let v = try CheckpointManifest("sd21-768v")
        XCTAssertEqual(try v.detect(predictionType: "epsilon").configName, "stabilityai-stable-diffusion-2-1-base")
        XCTAssertEqual(try CheckpointManifest("sd2-512-base").detect(predictionType: "v_prediction").configName, "stabilityai-stable-diffusion-2-1")
        XCTAssertEqual(try CheckpointManifest("sd15").detect(predictionType: "v_prediction").predictionType, "v_prediction")
        XCTAssertThrowsError(try v.detect(predictionType: "sample"))
    }

    /// Every original tensor lands on the diffusers name and shape the real configs' models have (the
    /// manifests' diffusers side comes from diffusers' own converter).
    func testFullSizeKeyMappingMatchesDiffusers() throws {
        for name in ["sd15", "sd21-768v", "x4-upscaler"] {
            let m = try CheckpointManifest(name)
            let d = try m.detect()
            let configs = try DiffusersConfigFolder.bundled(d.configName)
            let layout = try SingleFileDetector.layout(shapes: m.tensors, file: name)
            let convert = OriginalCheckpointConverter(source: ShapeOnlySource(shapes: m.tensors, sourceDescription: name), layout: layout)
            func mapped(_ s: RenamedTensorSource, stripping prefix: String = "") -> [String: [Int]] {
                Dictionary(uniqueKeysWithValues: s.tensorNames.compactMap { n in
                    n.hasSuffix("position_ids") ? nil : (String(n.dropFirst(n.hasPrefix(prefix) ? prefix.count : 0)), s.shape(of: n) ?? [])
                })
            }
            let unet = try convert.unet(UNet2DConditionConfig.load(configs.unetConfig))
            XCTAssertEqual(mapped(unet), m.diffusers["unet"], "\(name) unet")
            let vae = try convert.vae(AutoencoderKLConfig.load(configs.vaeConfig))
            XCTAssertEqual(mapped(vae), m.diffusers["vae"], "\(name) vae")
            let text = try convert.textEncoder(CLIPTextConfig.load(from: configs.textEncoderConfig))
            XCTAssertEqual(mapped(text, stripping: "text_model."), m.diffusers["text_encoder"], "\(name) text encoder")
        }
    }

    /// SDXL base and refiner at full size: the UNet (label_emb to add_embedding), the VAE, CLIP ViT-L from
    /// `conditioner.embedders.0.transformer.*` and OpenCLIP bigG (all 32 blocks, the projection transposed)
    /// land on the names and shapes diffusers' converter gives the real configs' models.
    func testFullSizeSDXLKeyMappingMatchesDiffusers() throws {
        for (name, encoders) in [("sdxl-base", ["text_encoder", "text_encoder_2"]), ("sdxl-refiner", ["text_encoder_2"])] {
            let m = try CheckpointManifest(name)
            let configs = try DiffusersConfigFolder.bundled(try m.detect().configName)
            let layout = try SingleFileDetector.layout(shapes: m.tensors, file: name)
            XCTAssertTrue(layout.isSDXL)
            XCTAssertFalse(layout.openCLIP)
            XCTAssertEqual(layout.textEncoders.map(\.component), encoders, name)
            let convert = OriginalCheckpointConverter(source: ShapeOnlySource(shapes: m.tensors, sourceDescription: name), layout: layout)
            func mapped(_ s: RenamedTensorSource, stripping prefix: String = "") -> [String: [Int]] {
                Dictionary(uniqueKeysWithValues: s.tensorNames.compactMap { n in
                    n.hasSuffix("position_ids") ? nil : (String(n.dropFirst(n.hasPrefix(prefix) ? prefix.count : 0)), s.shape(of: n) ?? [])
                })
            }
            let unetConfig = try UNet2DConditionConfig.load(configs.unetConfig)
            XCTAssertEqual(mapped(try convert.unet(unetConfig)), m.diffusers["unet"], "\(name) unet")
            XCTAssertEqual(mapped(try convert.vae(AutoencoderKLConfig.load(configs.vaeConfig))), m.diffusers["vae"], "\(name) vae")
            for e in layout.textEncoders {
                let text = try convert.textEncoder(CLIPTextConfig.load(from: configs.textEncoderConfig(e.component)), e)
                XCTAssertEqual(mapped(text, stripping: e.hasProjection ? "" : "text_model."), m.diffusers[e.component], "\(name) \(e.component)")
            }
        }
    }

    /// With more than 100 `model_ema.*` tensors the UNet reads the EMA copy (Lightning's dotless names).
    func testEMACopyIsPreferred() throws {
        let m = try CheckpointManifest("sd15")
        var shapes = m.tensors
        for (k, v) in m.tensors where k.hasPrefix("model.diffusion_model.") {
            shapes["model_ema." + k.dropFirst("model.".count).replacingOccurrences(of: ".", with: "")] = v
        }
        let config = try UNet2DConditionConfig.load(DiffusersConfigFolder.bundled("runwayml-stable-diffusion-v1-5").unetConfig)
        let source = ShapeOnlySource(shapes: shapes, sourceDescription: "ema")
        for prefer in [true, false] {
            let layout = try SingleFileDetector.layout(shapes: shapes, preferEMA: prefer, file: "ema")
            XCTAssertEqual(layout.usesEMA, prefer)
            let unet = try OriginalCheckpointConverter(source: source, layout: layout).unet(config)
            XCTAssertEqual(unet.entries.count, m.diffusers["unet"]?.count)
            XCTAssertTrue(unet.entries.values.allSatisfy { $0.sourceName.hasPrefix(prefer ? "model_ema." : "model.diffusion_model.") })
        }
        XCTAssertEqual(try SingleFileDetector.detect(shapes: shapes, file: "ema").usesEMA, true)
    }

    func assertDetectionFails(_ shapes: [String: [Int]], _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SingleFileDetector.detect(shapes: shapes, file: "/x/model.safetensors"), file: file, line: line) { error in
            let message = "\(error)"
            for f in ["/x/model.safetensors"] + fragments { XCTAssertTrue(message.contains(f), "\(message) lacks \(f)", file: file, line: line) }
        }
    }

    func testForeignAndBrokenLayoutsAreNamed() throws {
        let sd15 = try CheckpointManifest("sd15").tensors
        let vaeOnly = sd15.filter { $0.key.hasPrefix("first_stage_model.") }
        assertDetectionFails(vaeOnly, ["only a VAE"])
        assertDetectionFails(Dictionary(uniqueKeysWithValues: vaeOnly.map { (String($0.key.dropFirst("first_stage_model.".count)), $0.value) }),
                             ["standalone VAE"])
        assertDetectionFails(["conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": [768]], ["SDXL"])
        assertDetectionFails(["conv_in.weight": [320, 4, 3, 3]], ["diffusers-format"])
        assertDetectionFails([:], ["no tensors"])
        var odd = sd15
        odd["model.diffusion_model.input_blocks.0.0.weight"] = [320, 6, 3, 3]
        assertDetectionFails(odd, ["unknown architecture", "6 input channels"])
        assertDetectionFails(sd15.filter { !$0.key.hasPrefix("first_stage_model.") }, ["no VAE"])
        assertDetectionFails(sd15.filter { !$0.key.hasPrefix("cond_stage_model.") }, ["no text encoder"])
        var mixed = try CheckpointManifest("sd21-768v").tensors.filter { !$0.key.hasPrefix("cond_stage_model.") }
        for (k, v) in sd15 where k.hasPrefix("cond_stage_model.") { mixed[k] = v }
        assertDetectionFails(mixed, ["SD 2.x UNet", "CLIP (SD 1)", "cond_stage_model.model."])
    }

    /// A config that disagrees with the file: the unclaimed tensors are named.
    func testConfigMismatchNamesTensors() throws {
        let m = try CheckpointManifest("sd15")
        let layout = try SingleFileDetector.layout(shapes: m.tensors, file: "sd15")
        let convert = OriginalCheckpointConverter(source: ShapeOnlySource(shapes: m.tensors, sourceDescription: "/x/sd15.ckpt"), layout: layout)
        let x4 = try UNet2DConditionConfig.load(DiffusersConfigFolder.bundled("stabilityai-stable-diffusion-x4-upscaler").unetConfig)
        XCTAssertThrowsError(try convert.unet(x4)) { XCTAssertTrue("\($0)".contains("/x/sd15.ckpt") && "\($0)".contains("model.diffusion_model."), "\($0)") }
    }
}
