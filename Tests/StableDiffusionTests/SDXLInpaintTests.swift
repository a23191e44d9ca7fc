import Foundation
import XCTest
import StableDiffusion

extension TinyModels {
    static var sdxlInpainting: URL { root.appendingPathComponent("tiny-sdxl-inpainting") }
}

/// Parity with diffusers' StableDiffusionXLInpaintPipeline (Scripts/reference/gen_sdxl_fixtures.py): a 9-channel
/// SDXL inpainting UNet at diffusers' default strength, and the 4-channel base with a padding-mask crop.
final class SDXLInpaintTests: XCTestCase {
    func run(_ name: String, model: URL) throws -> (PipelineCase, GenerationResult) {
        let c = try PipelineCase(name)
        let pipe = try StableDiffusionXLInpaintPipeline(components: StableDiffusionComponents(directory: model))
        let image = try Image.load(path: c.directory.appendingPathComponent("input.png").path)
        let mask = try Image.load(path: c.directory.appendingPathComponent("mask.png").path)
        let result = try pipe(c.sdxlOptions, image: image, mask: mask, strength: c.json["strength"]?.doubleValue,
                              paddingMaskCrop: c.json["padding_mask_crop"]?.intValue)
        assertImagesMatch(result, try c.expectedImages())
        return (c, result)
    }

    /// 9 input channels; no strength given: 0.9999, so the first of 6 steps is skipped and the start is the
    /// noised image, as diffusers.
    func testNineChannelDefaultStrength() throws {
        let (c, result) = try run("sdxl_inpaint9", model: TinyModels.sdxlInpainting)
        XCTAssertNil(c.json["strength"])
        assertClose(result.latents, try c.tensors.tensor("final_latents"), tolerance: 1e-3, "sdxl_inpaint9")
        XCTAssertEqual(StableDiffusionInpaintPipeline.defaultStrength(.stableDiffusionXL), 0.9999)
    }

    /// The base model (4 channels): known latents blended back each step; padding-mask crop and paste-back.
    func testFourChannelBaseWithPaddingMaskCrop() throws {
        let (_, result) = try run("sdxl_inpaint4_crop", model: TinyModels.sdxl)
        XCTAssertEqual(result.images.shape, [1, 80, 112, 3])
    }

    /// `sd inpaint` on the SDXL inpainting folder: diffusers' picture, the SDXL default strength in the infotext.
    func testCLIInpaintsWithAnSDXLModel() throws {
        let out = try temporaryFolder(self)
        let c = try PipelineCase("sdxl_inpaint9")
        let png = out.appendingPathComponent("a.png").path
        let r = try SDProcess.run(["inpaint", "--model", TinyModels.sdxlInpainting.path, "--image", c.directory.appendingPathComponent("input.png").path,
                                   "--mask", c.directory.appendingPathComponent("mask.png").path, "--output", png,
                                   "--prompt", c.json["prompt"]?.stringValue ?? "", "--negative-prompt", c.json["negative_prompt"]?.stringValue ?? "",
                                   "--height", "64", "--width", "64", "--steps", "6", "--seed", "41"])
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertPNGMatches(png, c)
        let text = try PNGCodec.textChunks(Array(try Data(contentsOf: URL(fileURLWithPath: png))))
        XCTAssertTrue(text["parameters"]?.contains("Denoising strength: 0.9999") ?? false, "\(text)")
    }
}
