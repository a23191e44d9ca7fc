import Foundation
import XCTest
import StableDiffusion

/// `--scheduler lcm` (diffusers' LCMScheduler) in the pipelines, against diffusers on the tiny SD 1.x model
/// (Scripts/reference/gen_lcm_fixtures.py): the scheduler itself is also in the switch matrix.
final class LCMTests: XCTestCase {
    func run(_ name: String) throws {
        let c = try PipelineCase(name)
        var o = c.options
        o.scheduler = "lcm"
        let result = try StableDiffusionPipeline(modelDirectory: TinyModels.sd1)(o)
        XCTAssertEqual(result.schedulerName, "LCMScheduler")
        assertImagesMatch(result, try c.expectedImages())
        assertClose(result.latents, try c.tensors.tensor("final_latents"), tolerance: 1e-3, name)
    }

    /// 4 steps, guidance 1 (one UNet batch), two images: each image's between-step noise from its own draws.
    func testFourStepsWithoutGuidanceTwoImages() throws { try run("lcm_sd1_4steps_noguidance") }

    /// 6 steps with classifier-free guidance 2 and a negative prompt.
    func testSixStepsWithGuidance() throws { try run("lcm_sd1_6steps_guidance") }

    /// More steps than the distillation schedule (original_inference_steps 50) is an error, as in diffusers.
    func testTooManyStepsIsAnError() throws {
        var o = GenerationOptions(prompt: "x")
        o.scheduler = "lcm"
        o.numInferenceSteps = 51
        o.height = 32; o.width = 32
        XCTAssertThrowsError(try StableDiffusionPipeline(modelDirectory: TinyModels.sd1)(o)) {
            XCTAssertTrue("\($0)".contains("original_inference_steps"), "\($0)")
        }
    }

    func testCLISchedulerName() throws {
        let out = try temporaryFolder(self)
        let c = try PipelineCase("lcm_sd1_6steps_guidance")
        let png = out.appendingPathComponent("a.png")
        let r = try SDProcess.run(["txt2img", "--model", TinyModels.sd1.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                                   "--negative-prompt", "blurry", "--height", "64", "--width", "64", "--steps", "6", "--guidance-scale", "2",
                                   "--seed", "72", "--scheduler", "lcm", "--output", png.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertPNGMatches(png.path, c)
    }
}

extension TinyModels {
    static var lcm: URL { root.appendingPathComponent("tiny-lcm") }
}

/// An LCM-distilled folder (LatentConsistencyModelPipeline: a UNet with time_cond_proj_dim and LCMScheduler):
/// the guidance scale goes in as an embedding and there is no unconditional batch, as diffusers does.
final class LCMDistilledTests: XCTestCase {
    func testLCMPipelineDefaultsAndGuidanceEmbedding() throws {
        let c = try PipelineCase("lcm_distilled_default")
        let components = try StableDiffusionComponents(directory: TinyModels.lcm, includeVAEEncoder: false)
        XCTAssertEqual(components.unet.config.timeCondProjDim, 16)
        XCTAssertEqual(components.defaultSteps, 4)
        XCTAssertEqual(components.defaultGuidanceScale, 8.5)
        let result = try StableDiffusionPipeline(components: components)(c.options)
        XCTAssertEqual(result.schedulerName, "LCMScheduler")
        assertImagesMatch(result, try c.expectedImages())
        assertClose(result.latents, try c.tensors.tensor("final_latents"), tolerance: 1e-3, "lcm_distilled_default")
        // The scale reaches the UNet (through the embedding): the latents move well past the parity tolerance.
        var o = c.options
        o.guidanceScale = 2
        let other = try StableDiffusionPipeline(components: components)(o)
        let moved = zip(other.latents.scalars, result.latents.scalars).map { abs($0 - $1) }.max() ?? 0
        XCTAssertGreaterThan(moved, 0.01)
    }

    /// diffusers' `original_inference_steps` call argument (a 20-step distillation schedule: timesteps 999, 749,
    /// 499, 249 instead of 999, 759, 499, 259), in the library and as `--original-inference-steps`.
    func testOriginalInferenceSteps() throws {
        let c = try PipelineCase("lcm_distilled_original20")
        var o = c.options
        o.originalInferenceSteps = c.json["original_inference_steps"]?.intValue
        XCTAssertEqual(o.originalInferenceSteps, 20)
        let result = try StableDiffusionPipeline(modelDirectory: TinyModels.lcm)(o)
        assertImagesMatch(result, try c.expectedImages())
        assertClose(result.latents, try c.tensors.tensor("final_latents"), tolerance: 1e-3, "lcm_distilled_original20")
        let out = try temporaryFolder(self)
        let png = out.appendingPathComponent("o.png").path
        var r = try SDProcess.run(["txt2img", "--model", TinyModels.lcm.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                                   "--height", "64", "--width", "64", "--seed", "79", "--original-inference-steps", "20", "--output", png])
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertPNGMatches(png, c)
        r = try SDProcess.run(["txt2img", "--model", TinyModels.lcm.path, "--prompt", "x", "--original-inference-steps", "3",
                               "--height", "64", "--width", "64", "--output", out.appendingPathComponent("p.png").path])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("original_inference_steps"), r.stderr)
    }

    /// LatentConsistencyModelImg2ImgPipeline (AutoPipelineForImage2Image's pick for the folder): strength 0.7 takes
    /// the 4 steps from the first 35 of the 50 distillation timesteps, and all 4 run.
    func testImageToImageWithTheLCMUNet() throws {
        let c = try PipelineCase("lcm_distilled_img2img")
        let input = try Image.load(path: c.directory.appendingPathComponent("input.png").path)
        let pipe = try StableDiffusionImg2ImgPipeline(modelDirectory: TinyModels.lcm)
        let result = try pipe(c.options, image: try VaeImageProcessor().preprocess(input), strength: c.json["strength"]?.doubleValue)
        assertImagesMatch(result, try c.expectedImages())
    }

    /// `sd txt2img` on the folder takes the LCM pipeline's defaults (4 steps, guidance 8.5).
    func testCLIUsesTheLCMDefaults() throws {
        let out = try temporaryFolder(self)
        let c = try PipelineCase("lcm_distilled_default")
        let png = out.appendingPathComponent("a.png")
        let r = try SDProcess.run(["txt2img", "--model", TinyModels.lcm.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                                   "--height", "64", "--width", "64", "--seed", "74", "--num-images", "2", "--output", png.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let first = out.appendingPathComponent("a-0.png")
        try assertPNGMatches(first.path, c)
        let text = try PNGCodec.textChunks(Array(try Data(contentsOf: first)))
        XCTAssertTrue(text["parameters"]?.contains("Steps: 4, Sampler: LCMScheduler, CFG scale: 8.5") ?? false, "\(text)")
    }
}

/// `--scheduler tcd` (diffusers' TCDScheduler): the pipelines' eta is its gamma (noise between steps when
/// above 0); the CLI's default gamma is 0.3, as TCD's model cards use.
final class TCDTests: XCTestCase {
    func testGammaFromEtaMatchesDiffusers() throws {
        for name in ["tcd_sd1_eta03", "tcd_sd1_eta0_guidance"] {
            let c = try PipelineCase(name)
            var o = c.options
            o.scheduler = "tcd"
            o.eta = Float(c.json["eta"]?.doubleValue ?? 0)
            let result = try StableDiffusionPipeline(modelDirectory: TinyModels.sd1)(o)
            XCTAssertEqual(result.schedulerName, "TCDScheduler")
            assertImagesMatch(result, try c.expectedImages())
        }
    }

    func testCLIDefaultGammaAndEtaFlag() throws {
        let out = try temporaryFolder(self)
        let c = try PipelineCase("tcd_sd1_eta03")
        let png = out.appendingPathComponent("a.png")
        var r = try SDProcess.run(["txt2img", "--model", TinyModels.sd1.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                                   "--height", "64", "--width", "64", "--steps", "4", "--guidance-scale", "1", "--seed", "76",
                                   "--num-images", "2", "--scheduler", "tcd", "--output", png.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertPNGMatches(out.appendingPathComponent("a-1.png").path, c, image: 1)
        r = try SDProcess.run(["txt2img", "--model", TinyModels.sd1.path, "--prompt", "x", "--eta", "-1", "--output", out.appendingPathComponent("b.png").path])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("--eta"), r.stderr)
    }
}

/// SD-Turbo's recipe on the tiny SD 2 model: Euler with "trailing" spacing (`--timestep-spacing`), 1 step,
/// guidance 0 (one UNet batch), two images, as diffusers.
final class SDTurboRecipeTests: XCTestCase {
    func testOneStepWithoutGuidance() throws {
        let c = try PipelineCase("sd_turbo_1step")
        var o = c.options
        XCTAssertEqual(o.guidanceScale, 0)
        o.scheduler = "euler"
        o.timestepSpacing = "trailing"
        let result = try StableDiffusionPipeline(modelDirectory: TinyModels.sd2)(o)
        XCTAssertEqual(result.count, 2)
        assertImagesMatch(result, try c.expectedImages())
    }
}
