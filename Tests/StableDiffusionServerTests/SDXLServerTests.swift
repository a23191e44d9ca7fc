import Foundation
import XCTest
import StableDiffusion
import StableDiffusionServer

/// `sd serve` with SDXL models: the A1111 and OpenAI endpoints give the library's SDXL pictures, at the
/// model's default size when none is asked for.
final class SDXLServerTests: XCTestCase {
    func testTxt2ImgUsesTheModelsDefaultSizeAndTheSDXLPipeline() async throws {
        let s = try await TestServer.start("tiny-sdxl")
        let model = try ServerModels.load("tiny-sdxl")
        XCTAssertEqual(model.components.family, .stableDiffusionXL)
        let reply = try await s.post("/sdapi/v1/txt2img", ["prompt": "a red cube", "negative_prompt": "blurry", "seed": 5, "steps": 3,
                                                          "cfg_scale": 5, "sampler_name": "Euler"])
        XCTAssertEqual(reply.status, 200, reply.text)
        XCTAssertEqual(reply.info["width"] as? Int, 128)
        var o = GenerationOptions(prompt: "a red cube", negativePrompt: "blurry")
        (o.numInferenceSteps, o.guidanceScale, o.width, o.height, o.scheduler, o.seed) = (3, 5, 128, 128, "euler", 5)
        let pipe = try StableDiffusionXLPipeline(components: model.components)
        let expected = try libraryPNG(model, o, pipeline: "txt2img") { try pipe($0) }
        assertSamePNG(reply.images.first, expected.png, "the server's SDXL picture differs from the library's")

        let openAI = try await s.post("/v1/images/generations", ["prompt": "a red cube"])
        XCTAssertEqual(openAI.status, 200, openAI.text)
        XCTAssertEqual(openAI.json["size"] as? String, "128x128")
        try await s.stop()
    }

    /// A1111's refiner fields are refused by name rather than ignored; a refiner served alone refines only.
    func testRefinerFieldsAndARefinerModel() async throws {
        let s = try await TestServer.start("tiny-sdxl")
        let bad = try await s.post("/sdapi/v1/txt2img", ["prompt": "x", "steps": 2, "refiner_checkpoint": "sd_xl_refiner_1.0.safetensors",
                                                        "refiner_switch_at": 0.8])
        XCTAssertEqual(bad.status, 422, bad.text)
        XCTAssertTrue(bad.text.contains("refiner_checkpoint"), bad.text)
        let none = try await s.post("/sdapi/v1/txt2img", ["prompt": "x", "steps": 1, "width": 64, "height": 64, "refiner_checkpoint": "None"])
        XCTAssertEqual(none.status, 200, none.text)
        try await s.stop()

        let r = try await TestServer.start("tiny-sdxl-refiner")
        let txt = try await r.post("/sdapi/v1/txt2img", ["prompt": "x", "steps": 1, "width": 64, "height": 64])
        XCTAssertEqual(txt.status, 422, txt.text)
        let img = try await r.post("/sdapi/v1/img2img", ["prompt": "x", "steps": 2, "width": 64, "height": 64, "denoising_strength": 0.5,
                                                        "init_images": [TestImages.base64(TestImages.pattern())]])
        XCTAssertEqual(img.status, 200, img.text)
        try await r.stop()
    }
}
