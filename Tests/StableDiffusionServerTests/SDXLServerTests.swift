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

    /// `sd serve --refiner`: A1111's refiner_checkpoint / refiner_switch_at run the base + refiner ensemble,
    /// the library's picture with A1111's Refiner fields in the infotext; the refiner is listed in sd-models;
    /// a refiner it does not have, or one after inpainting, is refused by name.
    func testRefinerCheckpointRunsTheEnsemble() async throws {
        let base = try ServerModels.load("tiny-sdxl").components
        let refinerComponents = try StableDiffusionComponents(directory: ServerModels.root.appendingPathComponent("tiny-sdxl-refiner"),
                                                              includeVAEEncoder: false)
        let served = try ServedModel(components: base, name: "tiny-sdxl",
                                     refiner: ServedModel.Refiner(name: "tiny-sdxl-refiner", components: refinerComponents, base: base))
        let s = try await TestServer.start(served: served)
        let models = try await s.get("/sdapi/v1/sd-models")
        XCTAssertTrue(models.text.contains("tiny-sdxl-refiner"), models.text)
        let reply = try await s.post("/sdapi/v1/txt2img", ["prompt": "a red cube", "negative_prompt": "blurry", "seed": 17, "steps": 10,
                                                          "cfg_scale": 5, "width": 64, "height": 64,
                                                          "refiner_checkpoint": "tiny-sdxl-refiner.safetensors", "refiner_switch_at": 0.7])
        XCTAssertEqual(reply.status, 200, reply.text)
        var o = GenerationOptions(prompt: "a red cube", negativePrompt: "blurry")
        (o.numInferenceSteps, o.guidanceScale, o.width, o.height, o.seed) = (10, 5, 64, 64, 17)
        let pipe = try StableDiffusionXLPipeline(components: base)
        let refiner = try StableDiffusionXLImg2ImgPipeline(components: refinerComponents)
        let expected = try libraryPNG(served, o, pipeline: "txt2img", extra: [("Refiner", "tiny-sdxl-refiner"), ("Refiner switch at", "0.7")]) {
            try RefinerEnsemble.run($0, switchAt: 0.7, base: base, refiner: refiner, runBase: { try pipe($0) })
        }
        assertSamePNG(reply.images.first, expected.png, "the served ensemble differs from the library's")
        XCTAssertTrue((reply.info["infotexts"] as? [String])?.first?.contains("Refiner: tiny-sdxl-refiner, Refiner switch at: 0.7") ?? false,
                      reply.text)
        // Without the refiner the picture is the base's alone: another one.
        let plain = try await s.post("/sdapi/v1/txt2img", ["prompt": "a red cube", "negative_prompt": "blurry", "seed": 17, "steps": 10,
                                                          "cfg_scale": 5, "width": 64, "height": 64])
        XCTAssertNotEqual(plain.images.first, reply.images.first)

        let unknown = try await s.post("/sdapi/v1/txt2img", ["prompt": "x", "steps": 2, "refiner_checkpoint": "other-refiner"])
        XCTAssertEqual(unknown.status, 422, unknown.text)
        XCTAssertTrue(unknown.text.contains("tiny-sdxl-refiner"), unknown.text)
        let image = TestImages.base64(TestImages.pattern())
        let inpaint = try await s.post("/sdapi/v1/img2img", ["prompt": "x", "steps": 2, "width": 64, "height": 64, "init_images": [image],
                                                            "mask": image, "refiner_checkpoint": "tiny-sdxl-refiner"])
        XCTAssertEqual(inpaint.status, 422, inpaint.text)
        XCTAssertTrue(inpaint.text.contains("refiner_checkpoint"), inpaint.text)
        try await s.stop()
    }

    /// OpenAI's API has no steps or guidance: an LCM-distilled model runs with its own defaults (4 steps, 8.5).
    func testOpenAIUsesTheModelsOwnDefaults() async throws {
        let s = try await TestServer.start("tiny-lcm")
        let reply = try await s.post("/v1/images/generations", ["prompt": "a red cube", "size": "64x64", "seed": 3])
        XCTAssertEqual(reply.status, 200, reply.text)
        let data = ((reply.json["data"] as? [[String: Any]])?.first?["b64_json"] as? String).flatMap { Data(base64Encoded: $0) }
        let text = try PNGCodec.textChunks(Array(try XCTUnwrap(data)))["parameters"] ?? ""
        XCTAssertTrue(text.contains("Steps: 4, Sampler: LCMScheduler, CFG scale: 8.5"), text)
        try await s.stop()
    }
}
