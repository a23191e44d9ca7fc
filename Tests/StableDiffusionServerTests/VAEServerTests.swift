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
