import Foundation
import XCTest
import StableDiffusion
import StableDiffusionServer

/// `<lora:NAME:SCALE>` in request prompts (with the server's --lora-dir): merged for that request, the
/// base model back for the next, unknown names a 422 that shows no server path.
final class LoRATagTests: XCTestCase {
    static var loraDir: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("StableDiffusionTests/Fixtures/lora", isDirectory: true)
    }

    func testPromptTagsSwitchLoRAsPerRequest() async throws {
        let served = try ServedModel.load(model: ServerModels.root.appendingPathComponent("tiny-sd1").path,
                                          loraDirectory: Self.loraDir, promptSyntax: .a1111)
        let s = try await TestServer.start(served: served)
        func picture(_ prompt: String) async throws -> TestServer.Reply {
            try await s.post("/sdapi/v1/txt2img", ["prompt": prompt, "seed": 3, "steps": 2, "width": 32, "height": 32, "sampler_name": "Euler"])
        }
        func library(_ adapters: ModelAdapters, _ prompt: String) throws -> [UInt8] {
            var o = GenerationOptions(prompt: prompt)
            (o.numInferenceSteps, o.guidanceScale, o.width, o.height, o.scheduler, o.seed) = (2, 7, 32, 32, "euler", 3)
            o.promptSyntax = .a1111
            let c = adapters.isEmpty ? served.components : try served.components.withAdapters(adapters)
            return try StableDiffusionPipeline(components: c)(o).rgbImages()[0].pixels
        }
        let withTag = try await picture("a red cube <lora:sd1_kohya:0.8>")
        XCTAssertEqual(withTag.status, 200, withTag.text)
        let lora = ModelAdapters(loras: [LoRA(file: Self.loraDir.appendingPathComponent("sd1_kohya.safetensors"), scale: 0.8)])
        XCTAssertEqual(try Image.decode(data: Array(withTag.images[0])).pixels, try library(lora, "a red cube "))
        // The infotext keeps the tag, as AUTOMATIC1111's does.
        XCTAssertTrue((withTag.info["infotexts"] as? [String])?.first?.hasPrefix("a red cube <lora:sd1_kohya:0.8>") ?? false, withTag.text)
        let plain = try await picture("a red cube ")
        XCTAssertEqual(try Image.decode(data: Array(plain.images[0])).pixels, try library(ModelAdapters(), "a red cube "))
        XCTAssertNotEqual(try Image.decode(data: Array(plain.images[0])).pixels, try Image.decode(data: Array(withTag.images[0])).pixels)
        for bad in ["a <lora:nope:1>", "a <lora:../sd1_kohya:1>", "a <lora:sd1_kohya:x>"] {
            let r = try await picture(bad)
            XCTAssertEqual(r.status, 422, bad)
            XCTAssertTrue(r.text.contains("\"prompt\""), r.text)
            XCTAssertFalse(r.text.contains(Self.loraDir.path), r.text)
        }
        try await s.stop()
    }

    func testTagsWithoutALoRAFolderAreRefused() async throws {
        let s = try await TestServer.start()
        let r = try await s.post("/sdapi/v1/txt2img", ["prompt": "a <lora:sd1_kohya:1>", "steps": 1, "width": 32, "height": 32])
        XCTAssertEqual(r.status, 422, r.text)
        XCTAssertTrue(r.text.contains("--lora-dir"), r.text)
        try await s.stop()
    }
}
