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
        let (p, m) = psnr(try Image.load(path: png.path).pixels.map(Float.init), try c.expectedImages()[0].scalars)
        XCTAssertGreaterThanOrEqual(p, 40)
        XCTAssertLessThanOrEqual(m, 16)
    }
}
