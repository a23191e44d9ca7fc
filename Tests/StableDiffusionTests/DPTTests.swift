import Foundation
import XCTest
import StableDiffusion

/// DPT-Hybrid depth estimation and its image processor against transformers 5.24
/// (fixtures: Scripts/reference/gen_dpt_fixtures.py).
final class DPTTests: XCTestCase {
    private func caseDir(_ name: String) throws -> URL { try FixturePaths.url("dpt/\(name)") }

    private func io(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: caseDir(name).appendingPathComponent("io.safetensors").path)
    }

    /// The fixture's `image<i>` ([H, W, 3] floats of 0...255) as bytes.
    private func image(_ io: SafeTensorsFile, _ i: Int) throws -> (rgb8: [UInt8], width: Int, height: Int) {
        let t = try io.tensor("image\(i)")
        return (t.scalars.map { UInt8($0) }, t.shape[1], t.shape[0])
    }

    private func maxAbsDiff(_ a: Tensor, _ b: Tensor) -> Float {
        zip(a.scalars, b.scalars).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    func testHybridDepthMatchesTransformers() throws {
        let dir = try caseDir("hybrid")
        let model = try DPTForDepthEstimation(directory: dir)
        let io = try io("hybrid")
        let depth = try model(io.tensor("pixel_values"))
        print("DPT hybrid: max |depth| \(depth.scalars.map(abs).max() ?? 0), max abs error \(maxAbsDiff(depth, try io.tensor("predicted_depth")))")
        assertClose(depth, try io.tensor("predicted_depth"), tolerance: 1e-4, "hybrid depth from transformers' pixel values")
    }

    func testHybridEndToEndFromBytes() throws {
        let dir = try caseDir("hybrid")
        let processor = try DPTImageProcessor(directory: dir)
        XCTAssertEqual(processor.resample, .bilinear)
        let io = try io("hybrid")
        let img = try image(io, 0)
        let pixels = try processor.preprocess(rgb8: img.rgb8, width: img.width, height: img.height)
        let expected = try io.tensor("pixel_values0")
        XCTAssertEqual(pixels.shape, expected.shape)
        XCTAssertLessThanOrEqual(maxAbsDiff(pixels, expected), 1e-6, "pixel_values of a 50x37 image (bilinear upscale)")
        let depth = try DPTForDepthEstimation(directory: dir)(pixels)
        assertClose(depth, try io.tensor("predicted_depth"), tolerance: 1e-4, "hybrid depth from our preprocessing")
        for i in 0..<2 {
            let t = try io.tensor("extra_image\(i)")
            let extra = try processor.preprocess(rgb8: t.scalars.map { UInt8($0) }, width: t.shape[1], height: t.shape[0])
            XCTAssertLessThanOrEqual(maxAbsDiff(extra, try io.tensor("extra_pixel_values\(i)")), 1e-6, "\(t.shape)")
        }
    }

    /// Upsampling reassemble stage (transposed conv) with the fusion's residual resize, batch norm in the
    /// fusion units, bicubic downscaling with other mean/std, a batch of two.
    func testVariantBatchMatchesTransformers() throws {
        let dir = try caseDir("variant")
        let processor = try DPTImageProcessor(directory: dir)
        XCTAssertEqual(processor.resample, .bicubic)
        let io = try io("variant")
        let images = try (0..<2).map { try image(io, $0) }
        for (i, img) in images.enumerated() {
            let one = try processor.preprocess(rgb8: img.rgb8, width: img.width, height: img.height)
            XCTAssertLessThanOrEqual(maxAbsDiff(one, try io.tensor("pixel_values\(i)")), 1e-6, "image \(i) \(img.width)x\(img.height)")
        }
        let pixels = try processor.preprocess(images: images)
        XCTAssertLessThanOrEqual(maxAbsDiff(pixels, try io.tensor("pixel_values")), 1e-6)
        let fromTensor = try processor.preprocess(image: io.tensor("image0"))
        XCTAssertLessThanOrEqual(maxAbsDiff(fromTensor, try io.tensor("pixel_values0")), 1e-6, "NHWC tensor input")
        XCTAssertThrowsError(try processor.preprocess(image: Tensor(repeating: 0.5, shape: [2, 2, 3])))
        let depth = try DPTForDepthEstimation(directory: dir)(pixels)
        print("DPT variant: max |depth| \(depth.scalars.map(abs).max() ?? 0), max abs error \(maxAbsDiff(depth, try io.tensor("predicted_depth"))), pixel error \(maxAbsDiff(pixels, try io.tensor("pixel_values")))")
        assertClose(depth, try io.tensor("predicted_depth"), tolerance: 1e-4, "variant depth, batch of 2")
    }

    /// The reconstructed stable-diffusion-2-depth config builds the 122M-parameter model and strictly loads a
    /// state dict with transformers' names and shapes.
    func testSD2DepthConfigBuildsAndLoads() throws {
        let dir = try caseDir("sd2-depth")
        let config = try DPTConfig.load(from: dir.appendingPathComponent("config.json"))
        XCTAssertEqual(config.backbone.stageChannels, [256, 512, 1024])
        XCTAssertEqual(config.encoderFeatureLayers, [8, 11])
        let source = try ManifestSource(manifest: FixturePaths.url("manifests/stabilityai-stable-diffusion-2-depth-depth_estimator.json"))
        let model = try DPTForDepthEstimation(config: config, weights: source)
        // A full-size forward (zero weights): the 384x384 shapes flow through BiT's SAME padding, the 24x24
        // token grid, the strided reassemble conv and four fusion stages to a 384x384 map.
        let start = Date()
        let depth = try model(Tensor(zeros: [1, 384, 384, 3]))
        print("DPT sd2-depth full-size forward: \(Date().timeIntervalSince(start)) s")
        XCTAssertEqual(depth.shape, [1, 384, 384])
        let processor = try DPTImageProcessor(directory: dir)
        XCTAssertEqual(processor, DPTImageProcessor(height: 384, width: 384, resample: .bilinear))
        XCTAssertEqual(processor.outputSize(height: 480, width: 640).height, 384)
    }

    func testMissingAndUnexpectedWeightsAreErrors() throws {
        let dir = try caseDir("hybrid")
        let config = try DPTConfig.load(from: dir.appendingPathComponent("config.json"))
        let file = try SafeTensorsFile(path: dir.appendingPathComponent("model.safetensors").path)
        var tensors: [String: Tensor] = [:]
        for name in file.tensorNames { tensors[name] = try file.tensor(name) }
        var missing = tensors
        missing["neck.convs.2.weight"] = nil
        XCTAssertThrowsError(try DPTForDepthEstimation(config: config, weights: TensorDictionary(missing))) {
            XCTAssertTrue("\($0)".contains("neck.convs.2.weight"), "\($0)")
        }
        var extra = tensors
        extra["dpt.pooler.dense.weight"] = Tensor(zeros: [2, 2])
        XCTAssertThrowsError(try DPTForDepthEstimation(config: config, weights: TensorDictionary(extra))) {
            XCTAssertTrue("\($0)".contains("dpt.pooler.dense.weight"), "\($0)")
        }
        let model = try DPTForDepthEstimation(config: config, weights: TensorDictionary(tensors))
        XCTAssertThrowsError(try model(Tensor(zeros: [1, 32, 32, 3])), "input size other than image_size")
    }

    func testUnsupportedConfigValuesNameTheKey() throws {
        let dir = try caseDir("sd2-depth")
        let base = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json"))) as? [String: Any] ?? [:]
        let cases: [(String, (inout [String: Any]) -> Void)] = [
            ("is_hybrid", { $0["is_hybrid"] = false }),
            ("readout_type", { $0["readout_type"] = "add" }),
            ("hidden_act", { $0["hidden_act"] = "swish" }),
            ("backbone_config.layer_type", { c in
                var b = c["backbone_config"] as? [String: Any] ?? [:]; b["layer_type"] = "preactivation"; c["backbone_config"] = b }),
            ("backbone_config.unknown_option", { c in
                var b = c["backbone_config"] as? [String: Any] ?? [:]; b["unknown_option"] = 1; c["backbone_config"] = b }),
            ("neck_hidden_sizes", { $0["neck_hidden_sizes"] = [128, 512, 768, 768] }),
            ("some_new_option", { $0["some_new_option"] = true }),
        ]
        for (key, edit) in cases {
            var json = base
            edit(&json)
            let data = try JSONSerialization.data(withJSONObject: json)
            XCTAssertThrowsError(try DPTConfig(jsonData: data)) {
                XCTAssertEqual(($0 as? ModelConfigError)?.key, key, "\($0)")
            }
        }
        XCTAssertThrowsError(try DPTImageProcessor(jsonData: Data(#"{"resample": 1}"#.utf8))) {
            XCTAssertEqual(($0 as? ModelConfigError)?.key, "resample")
        }
        XCTAssertThrowsError(try DPTImageProcessor().preprocess(rgb8: [1, 2, 3], width: 2, height: 1))
    }

    /// Configs written by transformers 4.x carry backbone-selection keys (null/false for the hybrid model).
    func testTransformers4StyleConfigKeys() throws {
        let dir = try caseDir("sd2-depth")
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json"))) as? [String: Any] ?? [:]
        json["backbone"] = NSNull(); json["use_timm_backbone"] = false; json["use_pretrained_backbone"] = false
        json["backbone_kwargs"] = NSNull(); json["torch_dtype"] = "float32"; json["transformers_version"] = "4.26.0.dev0"
        let config = try DPTConfig(jsonData: JSONSerialization.data(withJSONObject: json))
        XCTAssertEqual(config, try DPTConfig.load(from: dir.appendingPathComponent("config.json")))
    }

    func testOutputSizeRules() {
        var p = DPTImageProcessor(height: 384, width: 384, keepAspectRatio: true, ensureMultipleOf: 32)
        // Fits the side that changes least, then rounds each side to a multiple of 32 (half to even).
        XCTAssertTrue(p.outputSize(height: 480, width: 640) == (384, 512))
        p.keepAspectRatio = false
        XCTAssertTrue(p.outputSize(height: 37, width: 50) == (384, 384))
    }
}
