import Foundation
import XCTest
import StableDiffusion

/// End-to-end parity with diffusers' StableDiffusionImg2ImgPipeline on the bundled tiny model.
final class ImageToImageTests: XCTestCase {
    static let sd1 = Result { try StableDiffusionImg2ImgPipeline(modelDirectory: TinyModels.sd1) }

    /// Euler ancestral (noise drawn at every step from the seeded generator), strength 0.6, negative prompt.
    func testAncestralSchedulerParity() throws {
        let c = try PipelineCase("sd1_img2img_euler_a")
        var options = c.options
        options.scheduler = "euler-a"
        let result = try Self.sd1.get()(options, image: c.tensors.tensor("input_image"),
                                         strength: c.json["strength"]?.doubleValue ?? 0.8)
        assertClose(result.latents, try c.tensors.tensor("final_latents"), tolerance: 1e-3)
        assertImagesMatch(result, try c.expectedImages())
    }

    func testStrengthAndImageAreValidated() throws {
        let pipe = try Self.sd1.get()
        let image = Tensor(zeros: [1, 32, 32, 3])
        let o = GenerationOptions(prompt: "x")
        XCTAssertThrowsError(try pipe(o, image: image, strength: 1.5))
        XCTAssertThrowsError(try pipe(o, image: image, strength: -0.1))
        XCTAssertThrowsError(try pipe(o, image: Tensor(zeros: [1, 30, 32, 3])))
        // int(2 * 0.2) = 0 steps left. (PNDM's schedule has one extra entry, with which diffusers still
        // runs one step, so this uses Euler.)
        var few = o
        few.numInferenceSteps = 2
        few.scheduler = "euler"
        XCTAssertThrowsError(try pipe(few, image: image, strength: 0.2)) { XCTAssertTrue("\($0)".contains("strength"), "\($0)") }
    }
}
