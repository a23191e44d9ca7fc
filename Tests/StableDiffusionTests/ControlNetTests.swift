import Foundation
import XCTest
import StableDiffusion
import DiffusionTensor

extension TinyModels {
    static var controlNetSD1: URL { root.appendingPathComponent("tiny-controlnet-sd1") }
    static var controlNetSDXL: URL { root.appendingPathComponent("tiny-controlnet-sdxl") }
}

/// diffusers' ControlNet pipelines on the tiny models with tiny random ControlNets whose zero convolutions are
/// not zero (Scripts/reference/gen_controlnet_fixtures.py; each picture is 17-28 dB from the one without).
final class ControlNetTests: XCTestCase {
    static let sd1Net = Result { try ControlNetModel(directory: TinyModels.controlNetSD1) }

    func control(_ c: PipelineCase, _ i: Int) throws -> Image {
        try Image.load(path: c.directory.appendingPathComponent("control\(i).png").path)
    }

    /// The case's ControlNet units, scales and windows from case.json (a number or one per ControlNet).
    func units(_ c: PipelineCase, models: [ControlNetModel]) throws -> [ControlNetUnit] {
        func value(_ key: String, _ i: Int) -> Double? {
            if let list = c.json[key]?.arrayValue { return list[i].doubleValue }
            return c.json[key]?.doubleValue
        }
        return try models.enumerated().map { i, model in
            ControlNetUnit(model: model, image: try control(c, i), conditioningScale: value("controlnet_conditioning_scale", i).map(Float.init),
                           guidanceStart: value("control_guidance_start", i) ?? 0, guidanceEnd: value("control_guidance_end", i) ?? 1)
        }
    }

    func check(_ c: PipelineCase, _ result: GenerationResult, _ name: String) throws {
        assertClose(result.latents, try c.tensors.tensor("final_latents"), tolerance: 1e-3, name)
        assertImagesMatch(result, try c.expectedImages())
    }

    /// One ControlNet at scale 0.8, no size given: the picture takes the control image's size (72x56).
    func testTextToImageSizeFromControlImage() throws {
        let c = try PipelineCase("cn_sd1_txt2img")
        var o = c.options
        o.controlNets = try units(c, models: [Self.sd1Net.get()])
        let result = try StableDiffusionPipeline(modelDirectory: TinyModels.sd1)(o)
        XCTAssertEqual(Array(result.images.shape[1...2]), [56, 72])
        try check(c, result, "txt2img")
    }

    /// Two ControlNets (MultiControlNetModel) with scales 1 and 0.5 and windows [0, 0.6] and [0.3, 1], two
    /// images per prompt; the second control image is stretched to the working size.
    func testTwoControlNetsWithWindows() throws {
        let c = try PipelineCase("cn_sd1_multi_window")
        let second = try ControlNetModel(directory: FixturePaths.url("controlnet/second"))
        var o = c.options
        o.controlNets = try units(c, models: [Self.sd1Net.get(), second])
        try check(c, try StableDiffusionPipeline(modelDirectory: TinyModels.sd1)(o), "multi")
    }

    /// Guess mode: the ControlNet sees only the conditional half; residuals scaled 0.1 ... 1.
    func testGuessMode() throws {
        let c = try PipelineCase("cn_sd1_guess")
        var o = c.options
        o.controlNets = try units(c, models: [Self.sd1Net.get()])
        o.guessMode = true
        try check(c, try StableDiffusionPipeline(modelDirectory: TinyModels.sd1)(o), "guess")
    }

    /// StableDiffusionControlNetImg2ImgPipeline: the control image apart from the input image, strength 0.7.
    func testImageToImage() throws {
        let c = try PipelineCase("cn_sd1_img2img")
        var o = c.options
        o.controlNets = try units(c, models: [Self.sd1Net.get()])
        let input = try Image.load(path: c.directory.appendingPathComponent("input.png").path)
        let result = try StableDiffusionImg2ImgPipeline(modelDirectory: TinyModels.sd1)(o, image: input, strength: c.json["strength"]?.doubleValue)
        try check(c, result, "img2img")
    }

    /// StableDiffusionControlNetInpaintPipeline on a 9-channel UNet with a padding-mask crop: the control
    /// image is cropped and fitted as the image is.
    func testInpaintingWithPaddingMaskCrop() throws {
        let c = try PipelineCase("cn_sd1_inpaint9_crop")
        var o = c.options
        o.controlNets = try units(c, models: [Self.sd1Net.get()])
        let image = try Image.load(path: c.directory.appendingPathComponent("input.png").path)
        let mask = try Image.load(path: c.directory.appendingPathComponent("mask.png").path)
        let result = try StableDiffusionInpaintPipeline(modelDirectory: TinyModels.inpainting)(
            o, image: image, mask: mask, paddingMaskCrop: c.json["padding_mask_crop"]?.intValue)
        assertImagesMatch(result, try c.expectedImages())
    }

    /// StableDiffusionXLControlNetPipeline: the ControlNet also gets the pooled text embeddings and time ids.
    func testSDXLTextToImage() throws {
        let c = try PipelineCase("cn_sdxl_txt2img")
        var o = c.options
        o.controlNets = try units(c, models: [ControlNetModel(directory: TinyModels.controlNetSDXL)])
        try check(c, try StableDiffusionXLPipeline(modelDirectory: TinyModels.sdxl)(o), "sdxl")
    }

    /// `--precision bf16` loads the ControlNet in bf16 like the UNet: the picture stays close to fp32's.
    func testBF16ControlNetStaysCloseToFP32() throws {
        try XCTSkipIf(ComputePrecision.bf16.unsupportedReason() != nil, "this CPU or build has no bf16 compute")
        let c = try PipelineCase("cn_sd1_txt2img")
        var o = c.options
        o.controlNets = try units(c, models: [ControlNetModel.load(TinyModels.controlNetSD1.path, precision: .bf16)])
        let result = try StableDiffusionPipeline(modelDirectory: TinyModels.sd1, precision: .bf16)(o)
        let expected = try c.expectedImages()[0]
        let (p, _) = psnr(result.rgb8(0).map(Float.init), expected.scalars)
        if ProcessInfo.processInfo.environment["SD_PRINT_PSNR"] != nil { print("bf16 ControlNet PSNR \(p)") }
        XCTAssertGreaterThan(p, 40, "bf16 ControlNet + UNet PSNR against diffusers fp32 (51 dB here)")
    }

    /// StableDiffusionXLControlNetImg2ImgPipeline: image-to-image's default scale 0.8, SDXL's conditioning.
    func testSDXLImageToImage() throws {
        let c = try PipelineCase("cn_sdxl_img2img")
        var o = c.options
        o.controlNets = try units(c, models: [ControlNetModel(directory: TinyModels.controlNetSDXL)])
        let input = try Image.load(path: c.directory.appendingPathComponent("input.png").path)
        let result = try StableDiffusionXLImg2ImgPipeline(modelDirectory: TinyModels.sdxl)(o, image: input, strength: c.json["strength"]?.doubleValue)
        try check(c, result, "sdxl img2img")
    }

    /// A ControlNet outside its window at every step, or at scale 0, leaves the picture as without it.
    func testInactiveControlNetChangesNothing() throws {
        let pipe = try StableDiffusionPipeline(modelDirectory: TinyModels.sd1)
        var o = GenerationOptions(prompt: "a red cube")
        o.height = 32; o.width = 32; o.numInferenceSteps = 3; o.seed = 5
        let plain = try pipe(o)
        let edges = try Image(width: 32, height: 32, channels: 3, fill: 200)
        o.controlNets = [ControlNetUnit(model: try Self.sd1Net.get(), image: edges, conditioningScale: 0)]
        XCTAssertEqual(try pipe(o).latents.scalars, plain.latents.scalars)
        o.controlNets = [ControlNetUnit(model: try Self.sd1Net.get(), image: edges, guidanceStart: 0.99, guidanceEnd: 1)]
        XCTAssertEqual(try pipe(o).latents.scalars, plain.latents.scalars)
        o.controlNets = [ControlNetUnit(model: try Self.sd1Net.get(), image: edges)]
        XCTAssertNotEqual(try pipe(o).latents.scalars, plain.latents.scalars)
    }

    /// diffusers' check_inputs on the window and scale, a ControlNet for another base model, and the
    /// pipelines that have no ControlNet variant, each an error that says what is wrong.
    func testBadInputsAreErrors() throws {
        let pipe = try StableDiffusionPipeline(modelDirectory: TinyModels.sd1)
        var o = GenerationOptions(prompt: "x")
        o.height = 32; o.width = 32; o.numInferenceSteps = 2
        let edges = try Image(width: 32, height: 32, channels: 3, fill: 200)
        let net = try Self.sd1Net.get()
        for (unit, expected) in [
            (ControlNetUnit(model: net, image: edges, guidanceStart: 0.5, guidanceEnd: 0.5), "must be below"),
            (ControlNetUnit(model: net, image: edges, guidanceStart: -0.1), ">= 0"),
            (ControlNetUnit(model: net, image: edges, guidanceEnd: 1.5), "<= 1"),
            (ControlNetUnit(model: net, image: edges, conditioningScale: .nan), "finite"),
        ] {
            o.controlNets = [unit]
            XCTAssertThrowsError(try pipe(o)) { XCTAssertTrue("\($0)".contains(expected), "\($0)") }
        }
        o.controlNets = [ControlNetUnit(model: try ControlNetModel(directory: TinyModels.controlNetSDXL), image: edges)]
        XCTAssertThrowsError(try pipe(o)) { XCTAssertTrue("\($0)".contains("does not fit"), "\($0)") }
        o.controlNets = [ControlNetUnit(model: net, image: edges)]
        XCTAssertThrowsError(try StableDiffusionDepth2ImgPipeline(modelDirectory: TinyModels.depth)(o, image: edges)) {
            XCTAssertTrue("\($0)".contains("not depth-to-image"), "\($0)")
        }
    }

    /// A "bgr" ControlNet sees the control image's channels reversed: the same model with the config changed
    /// and the image's channels swapped gives the same picture.
    func testBGRChannelOrder() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cn-bgr-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.copyItem(at: TinyModels.controlNetSD1, to: folder)
        let configURL = folder.appendingPathComponent("config.json")
        let text = try String(contentsOf: configURL, encoding: .utf8)
        try text.replacingOccurrences(of: "\"controlnet_conditioning_channel_order\": \"rgb\"",
                                      with: "\"controlnet_conditioning_channel_order\": \"bgr\"").write(to: configURL, atomically: true, encoding: .utf8)
        let bgr = try ControlNetModel(directory: folder)
        XCTAssertTrue(bgr.config.reversesChannels)
        let image = try Image.load(path: PipelineCase("cn_sd1_multi_window").directory.appendingPathComponent("control1.png").path)
        var swapped = image
        for p in stride(from: 0, to: swapped.pixels.count, by: 3) { swapped.pixels.swapAt(p, p + 2) }
        let pipe = try StableDiffusionPipeline(modelDirectory: TinyModels.sd1)
        var o = GenerationOptions(prompt: "a red cube")
        o.height = 32; o.width = 32; o.numInferenceSteps = 2; o.seed = 3
        o.controlNets = [ControlNetUnit(model: try Self.sd1Net.get(), image: image)]
        let rgbResult = try pipe(o)
        o.controlNets = [ControlNetUnit(model: bgr, image: swapped)]
        assertClose(try pipe(o).latents, rgbResult.latents, tolerance: 1e-5, "bgr")
    }

    /// A truncated weights file and a config that is not a ControlNet's are errors naming the file or key.
    func testBadFolders() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cn-bad-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.copyItem(at: TinyModels.controlNetSD1, to: folder)
        let weights = folder.appendingPathComponent("diffusion_pytorch_model.safetensors")
        let data = try Data(contentsOf: weights)
        try data.prefix(data.count / 2).write(to: weights)
        XCTAssertThrowsError(try ControlNetModel(directory: folder)) { XCTAssertTrue("\($0)".contains("diffusion_pytorch_model"), "\($0)") }
        try FileManager.default.copyItem(at: TinyModels.sd1.appendingPathComponent("unet/config.json"),
                                         to: folder.appendingPathComponent("unet-config.json"))
        try FileManager.default.removeItem(at: folder.appendingPathComponent("config.json"))
        try FileManager.default.moveItem(at: folder.appendingPathComponent("unet-config.json"), to: folder.appendingPathComponent("config.json"))
        XCTAssertThrowsError(try ControlNetModel(directory: folder)) { XCTAssertTrue("\($0)".contains("_class_name"), "\($0)") }
    }
}

/// Original-layout ControlNet files (Scripts/reference/gen_controlnet_single_file.py: converted independently of
/// diffusers and loaded unchanged by its from_single_file).
final class ControlNetSingleFileTests: XCTestCase {
    func folderWeights() throws -> ControlNetModel { try ControlNetModel(directory: TinyModels.controlNetSD1) }

    /// Both files, with and without ControlNet 1.0's `control_model.` prefix, give the folder's residuals exactly.
    func testSingleFilesGiveTheFolderModel() throws {
        let config = try ControlNetConfig.load(TinyModels.controlNetSD1.appendingPathComponent("config.json"))
        let reference = try folderWeights()
        let sample = try Tensor(shape: [1, 4, 4, 4], scalars: (0..<64).map { Float(sin(Double($0))) })
        let hint = try Tensor(shape: [1, 32, 32, 3], scalars: (0..<(32 * 32 * 3)).map { Float($0 % 7) / 7 })
        let context = try Tensor(shape: [1, 5, 32], scalars: (0..<160).map { Float(cos(Double($0))) })
        let conditioning = UNetConditioning(encoderHiddenStates: context)
        let expected = try reference(sample: sample, timesteps: [500], conditioning: conditioning, controlImage: hint)
        for name in ["tiny_controlnet.safetensors", "tiny_controlnet_prefixed.pth"] {
            let url = try FixturePaths.url("controlnet/single/\(name)")
            let net = try ControlNetModel(singleFile: url, config: config)
            let got = try net(sample: sample, timesteps: [500], conditioning: conditioning, controlImage: hint)
            XCTAssertEqual(got.down.count, expected.down.count)
            for (a, b) in zip(got.down, expected.down) { XCTAssertEqual(a.scalars, b.scalars, name) }
            XCTAssertEqual(got.middle.scalars, expected.middle.scalars, name)
        }
    }

    /// Without a config the bundled SD 1.5 one applies (as diffusers' default): the tiny file does not fit it,
    /// and the error names the file and the mismatch instead of loading something wrong.
    func testBundledConfigAndErrors() throws {
        let url = try FixturePaths.url("controlnet/single/tiny_controlnet.safetensors")
        XCTAssertThrowsError(try ControlNetModel(singleFile: url)) { XCTAssertTrue("\($0)".contains("tiny_controlnet.safetensors"), "\($0)") }
        // A UNet-only file is not a ControlNet.
        let unet = try FixturePaths.url("single_file/checkpoints/tiny-sd1.safetensors")
        XCTAssertThrowsError(try ControlNetModel(singleFile: unet)) { XCTAssertTrue("\($0)".contains("not a ControlNet"), "\($0)") }
        // A truncated file is an error naming it.
        let cut = FileManager.default.temporaryDirectory.appendingPathComponent("cut-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: cut) }
        let data = try Data(contentsOf: url)
        try data.prefix(data.count / 3).write(to: cut)
        XCTAssertThrowsError(try ControlNetModel(singleFile: cut)) { XCTAssertTrue("\($0)".contains(cut.lastPathComponent), "\($0)") }
        // The loader's argument forms: an existing file, a folder, a Hub id; anything else is refused by name.
        XCTAssertThrowsError(try ControlNetModel.load("/no/such/file.pth")) { XCTAssertTrue("\($0)".contains("/no/such/file.pth"), "\($0)") }
        XCTAssertEqual(try ControlNetModel.load(TinyModels.controlNetSD1.path).config.encoder.blockOutChannels, [32, 64])
    }
}
