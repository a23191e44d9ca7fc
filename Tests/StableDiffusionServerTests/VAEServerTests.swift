import Foundation
import XCTest
import StableDiffusion
import StableDiffusionServer

/// `sd serve --vae`: the pictures are the library's with that VAE, A1111's sd_vae option, /sdapi/v1/sd-vae and
/// the infotext name it, and switching to another VAE is refused by name.
final class VAEServerTests: XCTestCase {
    func testServedVAE() async throws {
        let sd1 = try ServerModels.load("tiny-sd1").components
        let taesd = ServerModels.root.appendingPathComponent("tiny-taesd")
        let components = try sd1.withVAE(Autoencoders.load(taesd, for: sd1), name: "tiny-taesd")
        let served = try ServedModel(components: components, name: "tiny-sd1", vaeName: "tiny-taesd")
        let s = try await TestServer.start(served: served)
        let reply = try await s.post("/sdapi/v1/txt2img", ["prompt": "a red cube", "seed": 5, "steps": 3, "width": 64, "height": 64,
                                                          "sampler_name": "Euler"])
        XCTAssertEqual(reply.status, 200, reply.text)
        var o = GenerationOptions(prompt: "a red cube")
        (o.numInferenceSteps, o.guidanceScale, o.width, o.height, o.scheduler, o.seed) = (3, 7, 64, 64, "euler", 5)
        let pipe = try StableDiffusionPipeline(components: components)
        let expected = try libraryPNG(served, o, pipeline: "txt2img", extra: [("VAE", "tiny-taesd")]) { try pipe($0) }
        assertSamePNG(reply.images.first, expected.png, "the served picture differs from the library's with the same VAE")
        let options = try await s.get("/sdapi/v1/options")
        XCTAssertTrue(options.text.contains("\"sd_vae\": \"tiny-taesd\""), options.text)
        let list = try await s.get("/sdapi/v1/sd-vae")
        XCTAssertTrue(list.text.contains("tiny-taesd") && !list.text.contains("/"), list.text)
        let same = try await s.post("/sdapi/v1/options", ["sd_vae": "tiny-taesd"])
        XCTAssertEqual(same.status, 200, same.text)
        let other = try await s.post("/sdapi/v1/options", ["sd_vae": "vae-ft-mse-840000-ema-pruned.safetensors"])
        XCTAssertEqual(other.status, 422, other.text)
        XCTAssertTrue(other.text.contains("sd_vae"), other.text)
        try await s.stop()
    }
}

/// `sd serve --preview-vae`: the live preview is the tiny autoencoder's full-size decode of the running job's
/// latents (A1111's TAESD preview) instead of the 1/8-size linear one.
final class PreviewVAETests: XCTestCase {
    func testLivePreviewIsTheTinyDecode() async throws {
        let taesd = try Autoencoders.load(directory: ServerModels.root.appendingPathComponent("tiny-taesd"), includeEncoder: false)
        let s = try await TestServer.start { $0.previewVAE = taesd; $0.previewEvery = 2 }
        let side = JobControlTests.longSide
        let running = Task { try await s.post("/sdapi/v1/txt2img", JobControlTests.long) }
        try await s.waitForProgress { ($0["sampling_step"] as? Int ?? 0) >= 3 }
        var image: String?
        for _ in 0..<100 where image == nil {  // bounded: the decode at step 2 or 4 lands within moments
            image = try await s.get("/sdapi/v1/progress").json["current_image"] as? String
            if image == nil { try await Task.sleep(nanoseconds: 50_000_000) }
        }
        let png = try XCTUnwrap(Data(base64Encoded: try XCTUnwrap(image)))
        let preview = try Image.decode(data: Array(png))
        XCTAssertEqual([preview.width, preview.height], [side, side], "a full-size decode, not the 1/8 linear preview")
        _ = try await s.post("/sdapi/v1/interrupt", [:])
        _ = try await withTimeout(60) { try await running.value }
        try await s.stop()
    }

    /// The decode the preview uses is the pipeline's own decode: for the final latents it is the picture.
    func testDecodedPreviewOfFinalLatentsIsThePicture() throws {
        let sd1 = try ServerModels.load("tiny-sd1").components
        let taesd = try Autoencoders.load(directory: ServerModels.root.appendingPathComponent("tiny-taesd"), includeEncoder: false)
        var o = GenerationOptions(prompt: "a red cube")
        (o.numInferenceSteps, o.width, o.height, o.seed, o.numImagesPerPrompt) = (2, 64, 64, 3, 2)
        let result = try StableDiffusionPipeline(components: sd1.withVAE(taesd, name: "tiny-taesd"))(o)
        let preview = try LatentPreview.decoded(result.latents, index: 1, vae: taesd)
        XCTAssertEqual(preview.pixels, try result.rgbImages()[1].pixels)
    }
}
