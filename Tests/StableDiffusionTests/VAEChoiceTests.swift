import Foundation
import XCTest
import StableDiffusion

extension TinyModels {
    static var taesd: URL { root.appendingPathComponent("tiny-taesd") }
    static var vaeKL: URL { root.appendingPathComponent("tiny-vae-kl") }
}

/// `--vae` / `withVAE` against diffusers' pipelines built with `vae=` (Scripts/reference/gen_vae_fixtures.py): an
/// AutoencoderTiny (TAESD's architecture: no latent distribution, so image-to-image draws no encoder noise)
/// and another AutoencoderKL, for text-to-image and image-to-image.
final class VAEChoiceTests: XCTestCase {
    func components(_ vae: URL, encoder: Bool = true) throws -> StableDiffusionComponents {
        try StableDiffusionComponents(directory: TinyModels.sd1, includeVAEEncoder: encoder)
            .withVAE(Autoencoders.load(directory: vae, includeEncoder: encoder), name: vae.lastPathComponent)
    }

    func testTinyAutoencoderTextToImage() throws {
        let c = try PipelineCase("vae_taesd_txt2img")
        let comps = try components(TinyModels.taesd, encoder: false)
        XCTAssertTrue(comps.vae is AutoencoderTiny)
        XCTAssertEqual(comps.vae.config.scalingFactor, 1)
        assertImagesMatch(try StableDiffusionPipeline(components: comps)(c.options), try c.expectedImages())
    }

    func testTinyAutoencoderImageToImage() throws {
        let c = try PipelineCase("vae_taesd_img2img")
        let input = try Image.load(path: c.directory.appendingPathComponent("input.png").path)
        let result = try StableDiffusionImg2ImgPipeline(components: components(TinyModels.taesd))(c.options, image: input,
                                                                                                   strength: c.json["strength"]?.doubleValue)
        assertImagesMatch(result, try c.expectedImages())
    }

    func testAnotherAutoencoderKL() throws {
        var c = try PipelineCase("vae_kl_txt2img")
        assertImagesMatch(try StableDiffusionPipeline(components: components(TinyModels.vaeKL, encoder: false))(c.options), try c.expectedImages())
        c = try PipelineCase("vae_kl_img2img")
        let input = try Image.load(path: c.directory.appendingPathComponent("input.png").path)
        assertImagesMatch(try StableDiffusionImg2ImgPipeline(components: components(TinyModels.vaeKL))(c.options, image: input,
                                                                                                         strength: c.json["strength"]?.doubleValue),
                          try c.expectedImages())
    }

    /// A VAE of the other family (SDXL's scaling factor on an SD model), or of another scale (TAESD on the x4
    /// upscaler): errors naming the VAE and the model.
    func testMismatchedVAEsAreRefused() throws {
        let sd1 = try StableDiffusionComponents(directory: TinyModels.sd1, includeVAEEncoder: false)
        let xlVAE = try Autoencoders.load(directory: TinyModels.sdxl, includeEncoder: false)
        XCTAssertThrowsError(try sd1.withVAE(xlVAE, name: "tiny-sdxl")) {
            XCTAssertTrue("\($0)".contains("tiny-sdxl") && "\($0)".contains("SDXL") && "\($0)".contains("tiny-sd1"), "\($0)")
        }
        let upscaler = try StableDiffusionComponents(directory: TinyModels.root.appendingPathComponent("tiny-sd-x4-upscaler"))
        XCTAssertThrowsError(try upscaler.withVAE(Autoencoders.load(directory: TinyModels.taesd), name: "tiny-taesd")) {
            XCTAssertTrue("\($0)".contains("pixels per latent") && "\($0)".contains("tiny-taesd"), "\($0)")
        }
        XCTAssertThrowsError(try Autoencoders.load(directory: TinyModels.root.appendingPathComponent("nope"))) {
            XCTAssertTrue("\($0)".contains("config.json"), "\($0)")
        }
    }

    /// `sd txt2img --vae DIR`: diffusers' picture, and A1111's "VAE" field in the infotext.
    func testCLIFlag() throws {
        let out = try temporaryFolder(self)
        let c = try PipelineCase("vae_taesd_txt2img")
        let png = out.appendingPathComponent("a.png")
        let r = try SDProcess.run(["txt2img", "--model", TinyModels.sd1.path, "--vae", TinyModels.taesd.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                                   "--negative-prompt", "blurry", "--height", "64", "--width", "64", "--steps", "4", "--seed", "91",
                                   "--num-images", "2", "--output", png.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let first = out.appendingPathComponent("a-0.png")
        try assertPNGMatches(first.path, c)
        let text = try PNGCodec.textChunks(Array(try Data(contentsOf: first)))
        XCTAssertTrue(text["parameters"]?.contains("VAE: tiny-taesd") ?? false, "\(text)")
        let bad = try SDProcess.run(["txt2img", "--model", TinyModels.sd1.path, "--vae", "/nonexistent/vae", "--prompt", "x",
                                     "--output", out.appendingPathComponent("b.png").path])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("--vae"), bad.stderr)
    }

    /// AUTOMATIC1111 VAE files (original layout, with and without `first_stage_model.`) read with the model's
    /// own VAE config: the same weights as tiny-vae-kl, so diffusers' vae= picture.
    func testA1111VAEFiles() throws {
        let c = try PipelineCase("vae_kl_txt2img")
        let sd1 = try StableDiffusionComponents(directory: TinyModels.sd1, includeVAEEncoder: false)
        for name in ["tiny-vae-kl.safetensors", "tiny-vae-kl-prefixed.safetensors"] {
            let file = try FixturePaths.url("single_file/vae/\(name)")
            let vae = try Autoencoders.load(file, for: sd1, includeEncoder: false)
            let result = try StableDiffusionPipeline(components: sd1.withVAE(vae, name: name))(c.options)
            assertImagesMatch(result, try c.expectedImages())
        }
        // A model checkpoint is not a VAE file: named as such.
        let notVAE = try SingleFileFixtures.checkpoint("tiny-sdxl.safetensors")
        XCTAssertNoThrow(try Autoencoders.load(notVAE, for: sd1, includeEncoder: false), "a full checkpoint holds a VAE under first_stage_model.")
        let unet = try TinyModels.sd1.appendingPathComponent("unet/diffusion_pytorch_model.safetensors")
        XCTAssertThrowsError(try Autoencoders.load(unet, for: sd1)) { XCTAssertTrue("\($0)".contains("decoder.conv_in.weight"), "\($0)") }
    }
}

/// AutoencoderTiny configs and weights that cannot be run are errors naming the key or tensor.
final class AutoencoderTinyErrorTests: XCTestCase {
    func config(_ changes: [String: JSONValue]) throws -> AutoencoderTinyConfig {
        var values = try JSONValue.parse(Data(contentsOf: TinyModels.taesd.appendingPathComponent("config.json")), file: "config.json").objectValue ?? [:]
        for (k, v) in changes { values[k] = v }
        return try AutoencoderTinyConfig(ConfigReader(file: "taesd/config.json", values: values))
    }

    func testBadConfigsNameTheKey() throws {
        XCTAssertNoThrow(try config([:]))
        for (key, value) in [("act_fn", JSONValue.string("gelu")), ("upsample_fn", .string("bilinear")), ("num_decoder_blocks", .array([.int(1)])),
                             ("upsampling_scaling_factor", .int(3)), ("latent_magnitude", .int(0)), ("_class_name", .string("AutoencoderKL")),
                             ("block_out_channels", .array([.int(1), .int(2), .int(3), .int(4)])), ("mystery", .int(1))] {
            XCTAssertThrowsError(try config([key: value]), key) { XCTAssertTrue("\($0)".contains(key) && "\($0)".contains("taesd/config.json"), "\($0)") }
        }
    }

    func testMissingOrMisshapedWeightsNameTheTensor() throws {
        let c = try config([:])
        let weights = try SafeTensorsFile(path: TinyModels.taesd.appendingPathComponent("diffusion_pytorch_model.safetensors").path)
        var tensors: [String: Tensor] = [:]
        for name in weights.tensorNames where name != "decoder.layers.2.conv.2.weight" { tensors[name] = try weights.tensor(name) }
        XCTAssertThrowsError(try AutoencoderTiny(config: c, weights: TensorDictionary(tensors))) {
            XCTAssertTrue("\($0)".contains("decoder.layers.2.conv.2.weight"), "\($0)")
        }
        tensors["decoder.layers.2.conv.2.weight"] = Tensor(zeros: [12, 12, 1, 1])
        XCTAssertThrowsError(try AutoencoderTiny(config: c, weights: TensorDictionary(tensors))) {
            XCTAssertTrue("\($0)".contains("decoder.layers.2.conv.2.weight"), "\($0)")
        }
        tensors["decoder.layers.2.conv.2.weight"] = try weights.tensor("decoder.layers.2.conv.2.weight")
        tensors["decoder.layers.99.weight"] = Tensor(zeros: [1])
        XCTAssertThrowsError(try AutoencoderTiny(config: c, weights: TensorDictionary(tensors))) {
            XCTAssertTrue("\($0)".contains("decoder.layers.99.weight") && "\($0)".contains("unexpected"), "\($0)")
        }
        let vae = try AutoencoderTiny(config: c, weights: weights, includeEncoder: false)
        XCTAssertFalse(vae.hasEncoder)
        XCTAssertThrowsError(try vae.encode(Tensor(zeros: [1, 64, 64, 3])))
        XCTAssertThrowsError(try vae.decode(Tensor(zeros: [1, 8, 8, 3]))) { XCTAssertTrue("\($0)".contains("4 channels"), "\($0)") }
    }
}
