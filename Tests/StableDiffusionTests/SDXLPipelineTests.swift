import Foundation
import XCTest
import StableDiffusion

extension TinyModels {
    static var sdxl: URL { root.appendingPathComponent("tiny-sdxl") }
    static var sdxlRefiner: URL { root.appendingPathComponent("tiny-sdxl-refiner") }
}

extension PipelineCase {
    /// The case's options with SDXL's fields (prompt_2, micro-conditioning, clip_skip) read too.
    var sdxlOptions: GenerationOptions {
        var o = options
        if let p = json["prompt_2"]?.stringValue { o.prompts2 = [p] }
        if let n = json["negative_prompt_2"]?.stringValue { o.negativePrompts2 = [n] }
        o.clipSkip = json["clip_skip"]?.intValue
        func pair(_ key: String) -> (Int, Int)? {
            guard let v = json[key]?.arrayValue?.compactMap(\.intValue), v.count == 2 else { return nil }
            return (v[0], v[1])
        }
        if let s = pair("original_size") { o.microConditioning.originalSize = s }
        if let s = pair("target_size") { o.microConditioning.targetSize = s }
        if let s = pair("crops_coords_top_left") { o.microConditioning.cropsCoordsTopLeft = s }
        if json["scheduler"]?.stringValue == "EulerAncestralDiscreteScheduler" { o.scheduler = "euler-a" }
        if let a = json["aesthetic_score"]?.doubleValue { o.microConditioning.aestheticScore = a }
        if let a = json["negative_aesthetic_score"]?.doubleValue { o.microConditioning.negativeAestheticScore = a }
        return o
    }
}

/// End-to-end parity with diffusers' StableDiffusionXLPipeline / StableDiffusionXLImg2ImgPipeline on the
/// bundled tiny SDXL model (Scripts/reference/gen_sdxl_fixtures.py): two tokenizers and text encoders of
/// different widths, the second with a projection and "!" padding; a text_time UNet with
/// transformer_layers_per_block (1, 1, 2); Euler with "leading" spacing; the SDXL VAE scaling factor.
final class SDXLPipelineTests: XCTestCase {
    static let components = Result { try StableDiffusionComponents(directory: TinyModels.sdxl) }

    func run(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> (PipelineCase, GenerationResult) {
        let c = try PipelineCase(name)
        let result = try StableDiffusionXLPipeline(components: Self.components.get())(c.sdxlOptions)
        assertImagesMatch(result, try c.expectedImages(), file: file, line: line)
        assertClose(result.latents, try c.tensors.tensor("final_latents"), tolerance: 1e-3, name, file: file, line: line)
        return (c, result)
    }

    func testComponentsDescribeTheSDXLFamily() throws {
        let c = try Self.components.get()
        XCTAssertEqual(c.family, .stableDiffusionXL)
        XCTAssertEqual(c.textEncoder2?.hasProjection, true)
        XCTAssertEqual(c.tokenizer2?.padToken, "!")
        XCTAssertTrue(c.forceZerosForEmptyPrompt)
        XCTAssertEqual(c.vae.config.scalingFactor, 0.13025)
        XCTAssertEqual(c.defaultImageSide, 128)
        XCTAssertEqual(try StableDiffusionComponents(directory: TinyModels.sd1).family, .stableDiffusion)
    }

    /// Negative prompt, 2 images per prompt, 96x64.
    func testNegativePromptTwoImagesNonSquare() throws { _ = try run("sdxl_txt2img") }
    /// No negative prompt: zero negative embeddings (force_zeros_for_empty_prompt); prompt_2; default size.
    func testZeroNegativeSecondPromptDefaultSize() throws { _ = try run("sdxl_txt2img_zero_negative") }
    /// Guidance 1 (no unconditional batch), clip_skip 1, original/target size and crop conditioning, two prompts.
    func testMicroConditioningClipSkipWithoutGuidance() throws { _ = try run("sdxl_txt2img_micro_nocfg") }
    /// negative_prompt_2 and a scheduler switch to Euler ancestral (noise drawn every step).
    func testSecondNegativePromptEulerAncestral() throws { _ = try run("sdxl_txt2img_negative2_euler_a") }

    func testImageToImage() throws {
        let c = try PipelineCase("sdxl_img2img")
        let input = try Image.load(path: c.directory.appendingPathComponent("input.png").path)
        let image = try VaeImageProcessor().preprocess(input)
        let result = try StableDiffusionXLImg2ImgPipeline(components: Self.components.get())(
            c.sdxlOptions, image: image, strength: c.json["strength"]?.doubleValue ?? 0.3)
        assertImagesMatch(result, try c.expectedImages())
    }

    /// SDXL-Turbo: the model's own scheduler config (Euler ancestral, "trailing" spacing) kept beside the case,
    /// guidance 0 (no unconditional batch), 1 and 4 steps, and 2-step image-to-image at strength 0.5.
    func turbo(_ name: String) throws -> (PipelineCase, StableDiffusionComponents) {
        let c = try PipelineCase(name)
        let config = try SchedulerConfig(contentsOf: c.directory.appendingPathComponent("scheduler_config.json"))
        return (c, try Self.components.get().withScheduler(config))
    }

    func testTurboOneStepAndFourSteps() throws {
        for name in ["sdxl_turbo_1step", "sdxl_turbo_4step"] {
            let (c, comps) = try turbo(name)
            XCTAssertEqual(c.options.guidanceScale, 0)
            let result = try StableDiffusionXLPipeline(components: comps)(c.sdxlOptions)
            assertImagesMatch(result, try c.expectedImages())
            assertClose(result.latents, try c.tensors.tensor("final_latents"), tolerance: 1e-3, name)
        }
        // "leading" spacing (the base folder's) starts one step from pure noise: another picture.
        let c = try PipelineCase("sdxl_turbo_1step")
        var o = c.sdxlOptions
        o.scheduler = "euler-a"
        let leading = try StableDiffusionXLPipeline(components: Self.components.get())(o)
        XCTAssertLessThan(psnr(leading.rgb8(0).map(Float.init), try c.expectedImages()[0].scalars).psnr, 40)
    }

    /// The library's `timestepSpacing` override: the base folder's config switched to Euler ancestral with
    /// "trailing" spacing is Turbo's scheduler; an unknown spacing is an error naming it.
    func testTimestepSpacingOverrideGivesTurbosScheduler() throws {
        let c = try PipelineCase("sdxl_turbo_1step")
        var o = c.sdxlOptions
        o.scheduler = "euler-a"
        o.timestepSpacing = "trailing"
        let result = try StableDiffusionXLPipeline(components: Self.components.get())(o)
        assertImagesMatch(result, try c.expectedImages())
        o.timestepSpacing = "karras"
        XCTAssertThrowsError(try StableDiffusionXLPipeline(components: Self.components.get())(o)) {
            XCTAssertTrue("\($0)".contains("timestep spacing"), "\($0)")
        }
    }

    func testTurboImageToImage() throws {
        let (c, comps) = try turbo("sdxl_turbo_img2img")
        let input = try Image.load(path: c.directory.appendingPathComponent("input.png").path)
        let result = try StableDiffusionXLImg2ImgPipeline(components: comps)(
            c.sdxlOptions, image: try VaeImageProcessor().preprocess(input), strength: c.json["strength"]?.doubleValue)
        assertImagesMatch(result, try c.expectedImages())
    }

    /// The prompt embeddings (both encoders' penultimate states concatenated) and pooled embeddings agree,
    /// negative first; without a negative prompt the negatives are zeros.
    func testConditioningMatchesEncodePrompt() throws {
        let comps = try Self.components.get()
        for name in ["sdxl_txt2img", "sdxl_txt2img_zero_negative"] {
            let c = try PipelineCase(name)
            var o = c.sdxlOptions
            o.numImagesPerPrompt = 1
            let cond = try comps.unetConditioning(o, height: 64, width: 64)
            let expected = try Tensor.concatenate([c.tensors.tensor("negative_prompt_embeds").slice(axis: 0, 0..<1),
                                                   c.tensors.tensor("prompt_embeds").slice(axis: 0, 0..<1)], axis: 0)
            assertClose(cond.encoderHiddenStates, expected, tolerance: 1e-4, name)
            let pooled = try Tensor.concatenate([c.tensors.tensor("negative_pooled_prompt_embeds").slice(axis: 0, 0..<1),
                                                 c.tensors.tensor("pooled_prompt_embeds").slice(axis: 0, 0..<1)], axis: 0)
            assertClose(try XCTUnwrap(cond.textTime).textEmbeds, pooled, tolerance: 1e-4, name)
            XCTAssertEqual(cond.textTime?.timeIds.scalars, [64, 64, 0, 0, 64, 64, 64, 64, 0, 0, 64, 64])
        }
    }

    /// The fixtures can fail: other micro-conditioning, or no zeroed negatives, moves the picture away.
    func testPictureDependsOnMicroConditioningAndNegatives() throws {
        let pipe = try StableDiffusionXLPipeline(components: Self.components.get())
        let c = try PipelineCase("sdxl_txt2img_zero_negative")
        var o = c.sdxlOptions
        o.microConditioning.originalSize = (1024, 1024)
        let (p1, _) = psnr(try pipe(o).rgb8(0).map(Float.init), try c.expectedImages()[0].scalars)
        XCTAssertLessThan(p1, 40, "original size changes the picture")
        o = c.sdxlOptions
        o.negativePrompts = [""]
        let (p2, _) = psnr(try pipe(o).rgb8(0).map(Float.init), try c.expectedImages()[0].scalars)
        XCTAssertLessThan(p2, 40, "an empty negative prompt is not the zeroed one")
    }

    /// The refiner: text_encoder_2 only (it takes the first prompt, as diffusers pairs them), aesthetic-score
    /// time ids, force_zeros_for_empty_prompt false.
    func testRefinerImageToImage() throws {
        let refiner = try StableDiffusionComponents(directory: TinyModels.sdxlRefiner)
        XCTAssertTrue(refiner.hasOnlySecondTextEncoder)
        XCTAssertTrue(refiner.requiresAestheticsScore)
        XCTAssertFalse(refiner.forceZerosForEmptyPrompt)
        let c = try PipelineCase("sdxl_refiner_img2img")
        let input = try Image.load(path: c.directory.appendingPathComponent("input.png").path)
        let pipe = try StableDiffusionXLImg2ImgPipeline(components: refiner)
        let result = try pipe(c.sdxlOptions, image: try VaeImageProcessor().preprocess(input), strength: c.json["strength"]?.doubleValue)
        assertImagesMatch(result, try c.expectedImages())
        assertClose(result.latents, try c.tensors.tensor("final_latents"), tolerance: 1e-3)
        // The aesthetic scores are in the picture.
        var o = c.sdxlOptions
        o.microConditioning.aestheticScore = 6
        let other = try pipe(o, image: try VaeImageProcessor().preprocess(input), strength: c.json["strength"]?.doubleValue)
        XCTAssertLessThan(psnr(other.rgb8(0).map(Float.init), try c.expectedImages()[0].scalars).psnr, 40)
        XCTAssertThrowsError(try StableDiffusionXLPipeline(components: refiner)) { XCTAssertTrue("\($0)".contains("refiner"), "\($0)") }
    }

    /// diffusers' ensemble of expert denoisers: the base stops at denoising_end 0.7 with latents only, the
    /// refiner starts from them at denoising_start 0.7.
    func testBaseRefinerEnsemble() throws {
        let c = try PipelineCase("sdxl_base_refiner_ensemble")
        var o = c.sdxlOptions
        o.denoisingEnd = 0.7
        o.outputType = .latents
        let base = try StableDiffusionXLPipeline(components: Self.components.get())(o)
        XCTAssertFalse(base.hasImages)
        assertClose(base.latents, try c.tensors.tensor("base_latents"), tolerance: 1e-3, "base latents")
        o.denoisingEnd = nil
        o.denoisingStart = 0.7
        o.outputType = .images
        let refiner = try StableDiffusionXLImg2ImgPipeline(components: StableDiffusionComponents(directory: TinyModels.sdxlRefiner))
        let result = try refiner(o, image: base.latents)
        assertImagesMatch(result, try c.expectedImages())
        // Latents now, decoded later by the VAE alone (what the CLI does after letting the networks go): the
        // same picture, bit for bit.
        o.outputType = .latents
        let later = try refiner(o, image: base.latents)
        XCTAssertFalse(later.hasImages)
        let decoded = try later.decodingLatents(with: refiner.components.vae)
        XCTAssertTrue(decoded.images.scalars == result.images.scalars, "decodingLatents drew another picture")
        XCTAssertEqual(decoded.images.shape, result.images.shape)
    }

    func testDenoisingFractionsAreValidated() throws {
        let pipe = try StableDiffusionXLPipeline(components: Self.components.get())
        var o = GenerationOptions(prompt: "x")
        o.numInferenceSteps = 2
        for bad in [0.0, 1.0, -0.5, .nan] {
            o.denoisingEnd = bad
            XCTAssertThrowsError(try pipe(o)) { XCTAssertTrue("\($0)".contains("denoising end"), "\($0)") }
        }
        o.denoisingEnd = 0.01
        XCTAssertThrowsError(try pipe(o)) { XCTAssertTrue("\($0)".contains("no denoising step"), "\($0)") }
        o.denoisingEnd = nil
        o.denoisingStart = 0.5
        XCTAssertThrowsError(try pipe(o)) { XCTAssertTrue("\($0)".contains("image-to-image"), "\($0)") }
        let img2img = try StableDiffusionXLImg2ImgPipeline(components: Self.components.get())
        o.denoisingEnd = 0.4
        XCTAssertThrowsError(try img2img(o, image: Tensor(zeros: [1, 8, 8, 4]))) { XCTAssertTrue("\($0)".contains("below"), "\($0)") }
    }

    func testSDXLOnlyOptionsAreRefusedForSD() throws {
        let pipe = try StableDiffusionPipeline(modelDirectory: TinyModels.sd1)
        var o = GenerationOptions(prompt: "x")
        o.numInferenceSteps = 1
        o.prompts2 = ["y"]
        XCTAssertThrowsError(try pipe(o)) { XCTAssertTrue("\($0)".contains("SDXL"), "\($0)") }
        o.prompts2 = nil
        o.microConditioning.targetSize = (64, 64)
        XCTAssertThrowsError(try pipe(o)) { XCTAssertTrue("\($0)".contains("SDXL"), "\($0)") }
    }

    func testSDXLOptionsAreValidated() throws {
        let pipe = try StableDiffusionXLPipeline(components: Self.components.get())
        var o = GenerationOptions(prompt: "x")
        o.numInferenceSteps = 1
        o.microConditioning.originalSize = (0, 64)
        XCTAssertThrowsError(try pipe(o)) { XCTAssertTrue("\($0)".contains("original size"), "\($0)") }
        o = GenerationOptions(prompts: ["a", "b"])
        o.prompts2 = ["1", "2", "3"]
        XCTAssertThrowsError(try pipe(o)) { XCTAssertTrue("\($0)".contains("prompt 2"), "\($0)") }
    }
}
