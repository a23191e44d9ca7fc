import Foundation
import XCTest
import StableDiffusion
import StableDiffusionServer

/// /sdapi/v1/txt2img and /img2img give the library's (and so the CLI's) PNG for the same seed and options.
final class A1111GenerationTests: XCTestCase {
    func testTxt2ImgIsTheLibraryPictureWithSeedsAndInfotexts() async throws {
        let s = try await TestServer.start()
        let model = try ServerModels.load("tiny-sd1")
        let reply = try await s.post("/sdapi/v1/txt2img", ["prompt": "a red cube", "negative_prompt": "blurry", "seed": 42, "steps": 3,
                                                          "cfg_scale": 7, "width": 64, "height": 48, "sampler_name": "Euler a",
                                                          "scheduler": "Automatic", "batch_size": 2])
        XCTAssertEqual(reply.status, 200, reply.text)
        XCTAssertEqual(reply.info["seed"] as? Int, 42)
        XCTAssertEqual(reply.info["all_seeds"] as? [Int], [42, 43])
        XCTAssertEqual(reply.info["sampler_name"] as? String, "Euler a")
        let pipe = try StableDiffusionPipeline(components: model.components)
        let infotexts = reply.info["infotexts"] as? [String] ?? []
        XCTAssertEqual(reply.images.count, 2)
        for (i, png) in reply.images.enumerated() {
            var o = GenerationOptions(prompt: "a red cube", negativePrompt: "blurry")
            (o.numInferenceSteps, o.guidanceScale, o.width, o.height, o.scheduler, o.seed) = (3, 7, 64, 48, "euler-a", 42 + UInt64(i))
            let expected = try libraryPNG(model, o, pipeline: "txt2img") { try pipe($0) }
            assertSamePNG(png, expected.png, "picture \(i) differs from the library's for seed \(42 + i)")
            XCTAssertEqual(infotexts[i], expected.text)
        }
        XCTAssertEqual(infotexts.first, "a red cube\nNegative prompt: blurry\nSteps: 3, Sampler: EulerAncestralDiscreteScheduler, "
                       + "CFG scale: 7.0, Seed: 42, Size: 64x48, Model: tiny-sd1, Pipeline: txt2img")
        let text = try PNGCodec.textChunks(Array(reply.images[0]))
        XCTAssertEqual(text["parameters"], infotexts.first)
        XCTAssertEqual((reply.json["parameters"] as? [String: Any])?["prompt"] as? String, "a red cube")
        try await s.stop()
    }

    /// Hummingbird ends the connection after a body read with cancellation on inbound close, so those
    /// replies say `Connection: close` (webuiapi lost about 1 in 20 follow-up requests on the reused
    /// connection before); plain GETs keep the connection.
    func testGenerationRepliesCloseTheirConnection() async throws {
        let s = try await TestServer.start()
        let ok = try await s.post("/sdapi/v1/txt2img", ["prompt": "x", "steps": 1, "width": 32, "height": 32])
        XCTAssertEqual(ok.status, 200, ok.text)
        XCTAssertEqual(ok.header("Connection")?.lowercased(), "close")
        let bad = try await s.post("/sdapi/v1/txt2img", ["prompt": "x", "steps": 1, "width": 33])
        XCTAssertEqual(bad.status, 422, bad.text)
        XCTAssertEqual(bad.header("Connection")?.lowercased(), "close")
        let openAI = try await s.post("/v1/images/generations", ["prompt": "x", "size": "bad"])
        XCTAssertEqual(openAI.status, 422, openAI.text)
        XCTAssertEqual(openAI.header("Connection")?.lowercased(), "close")
        let models = try await s.get("/sdapi/v1/sd-models")
        XCTAssertEqual(models.status, 200)
        XCTAssertNotEqual(models.header("Connection")?.lowercased(), "close")
        try await s.stop()
    }

    func testTxt2ImgEqualsTheCLIFile() async throws {
        guard let sd = Self.sdExecutable() else { throw XCTSkip("sd executable not built next to the tests") }
        let s = try await TestServer.start()
        let reply = try await s.post("/sdapi/v1/txt2img", ["prompt": "a cat", "seed": 7, "steps": 2, "width": 32, "height": 32,
                                                          "sampler_name": "DPM++ 2M", "scheduler": "Karras"])
        XCTAssertEqual(reply.status, 200, reply.text)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("sd-serve-\(UUID().uuidString).png")
        defer { try? FileManager.default.removeItem(at: out) }
        let p = Process()
        p.executableURL = sd
        p.arguments = ["txt2img", "--model", ServerModels.root.appendingPathComponent("tiny-sd1").path, "--prompt", "a cat", "--seed", "7",
                       "--steps", "2", "--width", "32", "--height", "32", "--scheduler", "dpm++2m-karras", "--guidance-scale", "7",
                       "--output", out.path]
        p.standardError = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        assertSamePNG(reply.images.first, Array(try Data(contentsOf: out)), "server PNG differs from `sd txt2img`'s file")
        try await s.stop()
    }

    func testImg2ImgAndInpaintOnAStandardModel() async throws {
        let s = try await TestServer.start()
        let model = try ServerModels.load("tiny-sd1")
        let image = TestImages.pattern()
        var o = GenerationOptions(prompt: "a house")
        (o.numInferenceSteps, o.guidanceScale, o.width, o.height, o.scheduler, o.seed) = (4, 7, 64, 64, "ddim", 5)

        var reply = try await s.post("/sdapi/v1/img2img", ["prompt": "a house", "seed": 5, "steps": 4, "width": 64, "height": 64,
                                                          "sampler_name": "DDIM", "denoising_strength": 0.5,
                                                          "init_images": [TestImages.base64(image)]])
        XCTAssertEqual(reply.status, 200, reply.text)
        let img2img = try StableDiffusionImg2ImgPipeline(components: model.components)
        var expected = try libraryPNG(model, o, pipeline: "img2img", extra: [("Denoising strength", "0.5")]) {
            try img2img($0, image: image, strength: 0.5)
        }
        assertSamePNG(reply.images.first, expected.png)

        // A mask makes it inpainting; inpaint_full_res + padding is diffusers' padding_mask_crop.
        let mask = TestImages.rightHalfMask()
        let inpaint = try StableDiffusionInpaintPipeline(components: model.components)
        for (fullRes, crop) in [(false, nil), (true, 8)] as [(Bool, Int?)] {
            reply = try await s.post("/sdapi/v1/img2img", ["prompt": "a house", "seed": 5, "steps": 4, "width": 64, "height": 64,
                                                          "sampler_name": "DDIM", "denoising_strength": 0.9, "mask": TestImages.base64(mask),
                                                          "inpaint_full_res": fullRes, "inpaint_full_res_padding": 8,
                                                          "init_images": ["data:image/png;base64," + TestImages.base64(image)]])
            XCTAssertEqual(reply.status, 200, reply.text)
            expected = try libraryPNG(model, o, pipeline: "inpaint", extra: [("Denoising strength", "0.9")]) {
                try inpaint($0, image: image, mask: mask, strength: 0.9, paddingMaskCrop: crop)
            }
            assertSamePNG(reply.images.first, expected.png, "inpaint_full_res \(fullRes)")
        }
        // inpainting_mask_invert repaints the other half.
        reply = try await s.post("/sdapi/v1/img2img", ["prompt": "a house", "seed": 5, "steps": 4, "width": 64, "height": 64,
                                                      "sampler_name": "DDIM", "denoising_strength": 0.9, "mask": TestImages.base64(mask),
                                                      "inpaint_full_res": false, "inpainting_mask_invert": 1,
                                                      "init_images": [TestImages.base64(image)]])
        expected = try libraryPNG(model, o, pipeline: "inpaint", extra: [("Denoising strength", "0.9")]) {
            try inpaint($0, image: image, mask: TestImages.inverted(mask), strength: 0.9)
        }
        assertSamePNG(reply.images.first, expected.png)
        try await s.stop()
    }

    func testInpaintingModelInpaintsAndRefusesTxt2Img() async throws {
        let s = try await TestServer.start("tiny-sd-inpainting")
        let model = try ServerModels.load("tiny-sd-inpainting")
        XCTAssertEqual(model.kind, .inpainting)
        let image = TestImages.pattern()
        let bad = try await s.post("/sdapi/v1/txt2img", ["prompt": "x", "steps": 2, "width": 64, "height": 64])
        XCTAssertEqual(bad.status, 422)
        let reply = try await s.post("/sdapi/v1/img2img", ["prompt": "a dog", "seed": 3, "steps": 3, "width": 64, "height": 64,
                                                          "sampler_name": "Euler", "denoising_strength": 1.0,
                                                          "init_images": [TestImages.base64(image)]])
        XCTAssertEqual(reply.status, 200, reply.text)
        XCTAssertEqual(reply.info["is_using_inpainting_conditioning"] as? Bool, true)
        var o = GenerationOptions(prompt: "a dog")
        (o.numInferenceSteps, o.guidanceScale, o.width, o.height, o.scheduler, o.seed) = (3, 7, 64, 64, "euler", 3)
        let inpaint = try StableDiffusionInpaintPipeline(components: model.components)
        let expected = try libraryPNG(model, o, pipeline: "inpaint", extra: [("Denoising strength", "1.0")]) {
            try inpaint($0, image: image, mask: Image(width: 64, height: 64, channels: 1, fill: 255), strength: 1.0)
        }
        assertSamePNG(reply.images.first, expected.png, "no mask on an inpainting model repaints everything")
        try await s.stop()
    }

    func testDepthModelImg2ImgIsDepth2Img() async throws {
        let s = try await TestServer.start("tiny-sd2-depth")
        let model = try ServerModels.load("tiny-sd2-depth")
        XCTAssertEqual(model.kind, .depth)
        let image = TestImages.pattern()
        let reply = try await s.post("/sdapi/v1/img2img", ["prompt": "a room", "seed": 9, "steps": 3, "width": 64, "height": 64,
                                                          "sampler_name": "PLMS", "denoising_strength": 0.8,
                                                          "init_images": [TestImages.base64(image)]])
        XCTAssertEqual(reply.status, 200, reply.text)
        var o = GenerationOptions(prompt: "a room")
        (o.numInferenceSteps, o.guidanceScale, o.width, o.height, o.scheduler, o.seed) = (3, 7, 64, 64, "pndm", 9)
        let depth = try StableDiffusionDepth2ImgPipeline(loadingEstimatorFor: model.components)
        let expected = try libraryPNG(model, o, pipeline: "depth2img", extra: [("Denoising strength", "0.8")]) {
            try depth($0, image: image, strength: 0.8)
        }
        assertSamePNG(reply.images.first, expected.png)
        try await s.stop()
    }

    func testUpscalerThroughExtrasAndImg2Img() async throws {
        let s = try await TestServer.start("tiny-sd-x4-upscaler")
        let model = try ServerModels.load("tiny-sd-x4-upscaler")
        XCTAssertEqual(model.kind, .upscaler)
        let image = TestImages.pattern(16, 16)
        let upscale = try StableDiffusionUpscalePipeline(components: model.components)
        let upscalers = try await s.get("/sdapi/v1/upscalers").array.compactMap { $0["name"] as? String }
        XCTAssertEqual(upscalers, ["None", "SD x4 (tiny-sd-x4-upscaler)"])

        var reply = try await s.post("/sdapi/v1/extra-single-image", ["image": TestImages.base64(image), "upscaler_1": upscalers[1],
                                                                     "prompt": "sharp", "steps": 3, "seed": 4])
        XCTAssertEqual(reply.status, 200, reply.text)
        var o = GenerationOptions(prompt: "sharp")
        (o.numInferenceSteps, o.guidanceScale, o.seed) = (3, StableDiffusionUpscalePipeline.defaultGuidanceScale, 4)
        var expected = try libraryPNG(model, o, pipeline: "upscale", extra: [("Noise level", "20")]) { try upscale($0, image: image) }
        assertSamePNG((reply.json["image"] as? String).flatMap { Data(base64Encoded: $0) }, expected.png)
        XCTAssertEqual(expected.image.width, 64)

        // Prompted upscaling through img2img (A1111 fields; noise_level is an extension).
        reply = try await s.post("/sdapi/v1/img2img", ["prompt": "sharp", "steps": 3, "seed": 4, "cfg_scale": 9, "noise_level": 30,
                                                      "sampler_name": "DDIM", "init_images": [TestImages.base64(image)]])
        XCTAssertEqual(reply.status, 200, reply.text)
        (o.scheduler) = "ddim"
        expected = try libraryPNG(model, o, pipeline: "upscale", extra: [("Noise level", "30")]) { try upscale($0, image: image, noiseLevel: 30) }
        assertSamePNG(reply.images.first, expected.png)
        try await s.stop()
    }

    /// One process, several sizes: a picture must not depend on the sizes drawn before it (Conv2D once
    /// left its weights in the layout of the last new size, and cached plans for other sizes ran on them).
    func testPicturesDoNotDependOnEarlierSizes() async throws {
        let s = try await TestServer.start()
        let small: [String: Any] = ["prompt": "a boat", "seed": 7, "steps": 2, "width": 64, "height": 64]
        let before = try await s.post("/sdapi/v1/txt2img", small)
        let big = try await s.post("/sdapi/v1/txt2img", ["prompt": "big", "steps": 1, "width": 192, "height": 192])
        XCTAssertEqual(big.status, 200)
        let after = try await s.post("/sdapi/v1/txt2img", small)
        assertSamePNG(after.images.first, Array(before.images.first ?? Data()), "64x64 changed after a 192x192 picture")
        try await s.stop()
    }

    static func sdExecutable() -> URL? {
        var candidates: [URL] = []
        if let exe = Bundle.main.executableURL { candidates.append(exe.deletingLastPathComponent()) }
        candidates.append(Bundle.main.bundleURL)
        candidates.append(Bundle.main.bundleURL.deletingLastPathComponent())
        for c in Bundle.allBundles.map(\.bundleURL) { candidates.append(c.deletingLastPathComponent()) }
        return candidates.map { $0.appendingPathComponent("sd") }.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }
}
