import Foundation
import XCTest
import StableDiffusion

/// Parity with diffusers' StableDiffusionInpaintPipeline on tiny models, from diffusers' processed inputs.
final class InpaintTests: XCTestCase {
    static let inpaint9 = Result { try StableDiffusionInpaintPipeline(modelDirectory: TinyModels.inpainting) }
    static let inpaint4 = Result { try StableDiffusionInpaintPipeline(modelDirectory: TinyModels.sd1) }

    func run(_ name: String, _ pipe: StableDiffusionInpaintPipeline) throws -> (PipelineCase, GenerationResult) {
        let c = try PipelineCase(name)
        let result = try pipe(c.options, image: c.tensors.tensor("input_image"), mask: c.tensors.tensor("mask_condition"),
                              strength: c.json["strength"]?.doubleValue ?? 1.0)
        assertClose(result.latents, try c.tensors.tensor("final_latents"), tolerance: 1e-3, name)
        return (c, result)
    }

    /// 9-channel UNet, padding-mask crop working region, two images per prompt (before the paste-back).
    func test9ChannelCropTwoImages() throws {
        let (c, result) = try run("inpaint9_crop", Self.inpaint9.get())
        XCTAssertEqual(result.count, 2)
        try assertImagesMatch(result, pixels: c.tensors.tensor("pre_overlay"))
    }

    /// 4-channel UNet: known latents re-noised and blended after every step, strength 1.
    func test4ChannelBlendFullStrength() throws {
        let (c, result) = try run("inpaint4_blend", Self.inpaint4.get())
        assertImagesMatch(result, try c.expectedImages())
    }

    /// 9-channel UNet at strength 0.6 (starts from the noised image), mask given at another size.
    func test9ChannelPartialStrength() throws {
        let (c, result) = try run("inpaint9_strength_mask_size", Self.inpaint9.get())
        assertImagesMatch(result, try c.expectedImages())
    }

    /// From the PNG files, through diffusers' image and mask processors, the crop and the paste-back.
    func testFromImageFilesWithPaddingMaskCrop() throws {
        for (name, pipe) in [("inpaint9_crop", try Self.inpaint9.get()), ("inpaint9_strength_mask_size", try Self.inpaint9.get()),
                             ("inpaint4_blend", try Self.inpaint4.get())] {
            let c = try PipelineCase(name)
            let image = try Image.load(path: c.directory.appendingPathComponent("input.png").path)
            let mask = try Image.load(path: c.directory.appendingPathComponent("mask.png").path)
            let result = try pipe(c.options, image: image, mask: mask, strength: c.json["strength"]?.doubleValue ?? 1.0,
                                  paddingMaskCrop: c.json["padding_mask_crop"]?.intValue)
            assertImagesMatch(result, try c.expectedImages())
        }
    }

    /// diffusers divides by zero on an all-black mask with a padding crop; here that is a clear error.
    /// Without a crop an empty mask is diffusers' behaviour: the model runs and nothing is forced.
    func testEmptyAndFullMasks() throws {
        let pipe = try Self.inpaint9.get()
        var o = GenerationOptions(prompt: "x")
        o.numInferenceSteps = 2; o.height = 32; o.width = 32
        let image = try Image(width: 40, height: 40, channels: 3, fill: 128)
        let black = try Image(width: 40, height: 40, channels: 1, fill: 0)
        let white = try Image(width: 40, height: 40, channels: 1, fill: 255)
        XCTAssertThrowsError(try pipe(o, image: image, mask: black, paddingMaskCrop: 4)) { XCTAssertTrue("\($0)".contains("empty"), "\($0)") }
        XCTAssertEqual(try pipe(o, image: image, mask: black).images.shape, [1, 32, 32, 3])
        XCTAssertEqual(try pipe(o, image: image, mask: white, paddingMaskCrop: 4).images.shape, [1, 40, 40, 3])
    }

    func testInputsAreValidated() throws {
        let pipe = try Self.inpaint9.get()
        let o = GenerationOptions(prompt: "x")
        let image = Tensor(zeros: [1, 32, 32, 3])
        XCTAssertThrowsError(try pipe(o, image: image, mask: Tensor(zeros: [1, 16, 32, 1])))
        XCTAssertThrowsError(try pipe(o, image: image, mask: Tensor(zeros: [1, 32, 32, 1]), strength: 2))
        XCTAssertThrowsError(try StableDiffusionImg2ImgPipeline(modelDirectory: TinyModels.inpainting))
        XCTAssertThrowsError(try StableDiffusionPipeline(modelDirectory: TinyModels.inpainting))
    }
}
