import Foundation
import XCTest
import StableDiffusion

/// Single-file checkpoints give diffusers' `from_single_file` picture (PSNR >= 40 dB, max difference <= 16).
final class SingleFilePipelineTests: XCTestCase {
    func txt2img(_ file: String, config: URL, case name: String) throws {
        let components = try StableDiffusionComponents(singleFile: SingleFileFixtures.checkpoint(file), configDirectory: config,
                                                       includeVAEEncoder: false)
        let c = try PipelineCase(singleFile: name)
        let result = try StableDiffusionPipeline(components: components)(c.options)
        assertImagesMatch(result, try c.expectedImages())
    }

    func testSD1SafetensorsMatchesDiffusers() throws { try txt2img("tiny-sd1.safetensors", config: TinyModels.sd1, case: "sd1") }

    /// A torch .ckpt ({"state_dict": ...}) whose EMA copy holds the weights diffusers used (extract_ema=True).
    func testSD1CkptPrefersEMAAndMatchesDiffusers() throws { try txt2img("tiny-sd1.ckpt", config: TinyModels.sd1, case: "sd1") }

    /// The non-EMA copy in that file holds other weights: reading it instead gives another picture.
    func testSD1CkptWithoutEMADiffers() throws {
        let components = try StableDiffusionComponents(singleFile: SingleFileFixtures.checkpoint("tiny-sd1.ckpt"), configDirectory: TinyModels.sd1,
                                                       preferEMA: false, includeVAEEncoder: false)
        let c = try PipelineCase(singleFile: "sd1")
        let result = try StableDiffusionPipeline(components: components)(c.options)
        XCTAssertLessThan(psnr(result.rgb8(0).map(Float.init), try c.expectedImages()[0].scalars).psnr, 40)
    }

    /// OpenCLIP text encoder (fused in_proj split), linear projections, v-prediction from the config's scheduler.
    func testSD2VPredictionMatchesDiffusers() throws {
        let components = try StableDiffusionComponents(singleFile: SingleFileFixtures.checkpoint("tiny-sd2.safetensors"),
                                                       configDirectory: TinyModels.sd2)
        XCTAssertEqual(components.schedulerConfig.values["prediction_type"], .string("v_prediction"))
        try txt2img("tiny-sd2.safetensors", config: TinyModels.sd2, case: "sd2")
    }

    func testInpaintingMatchesDiffusers() throws {
        let components = try StableDiffusionComponents(singleFile: SingleFileFixtures.checkpoint("tiny-sd-inpainting.safetensors"),
                                                       configDirectory: TinyModels.inpainting)
        let c = try PipelineCase(singleFile: "inpainting")
        let src = try FixturePaths.url("pipelines/inpaint9_crop")
        let image = try Image.load(path: src.appendingPathComponent("input.png").path)
        let mask = try Image.load(path: src.appendingPathComponent("mask.png").path)
        let result = try StableDiffusionInpaintPipeline(components: components)(c.options, image: image, mask: mask, strength: 1.0)
        assertImagesMatch(result, try c.expectedImages())
    }

    /// --prediction-type replaces the scheduler config's value; anything but epsilon/v_prediction is refused.
    func testPredictionTypeOverrideReachesTheScheduler() throws {
        let components = try StableDiffusionComponents(singleFile: SingleFileFixtures.checkpoint("tiny-sd2.safetensors"),
                                                       configDirectory: TinyModels.sd2, predictionType: "epsilon")
        XCTAssertEqual(components.schedulerConfig.values["prediction_type"], .string("epsilon"))
        XCTAssertThrowsError(try StableDiffusionComponents(singleFile: SingleFileFixtures.checkpoint("tiny-sd2.safetensors"),
                                                           configDirectory: TinyModels.sd2, predictionType: "sample"))
    }
}
