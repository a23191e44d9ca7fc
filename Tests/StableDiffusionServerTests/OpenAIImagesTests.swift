import Foundation
import XCTest
import StableDiffusion
import StableDiffusionServer

/// /v1/images/generations and /v1/images/edits in OpenAI's shapes, with the library's pictures.
final class OpenAIImagesTests: XCTestCase {
    func testGenerationsB64AndURL() async throws {
        let s = try await TestServer.start()
        let model = try ServerModels.load("tiny-sd1")
        let body: [String: Any] = ["model": "sd", "prompt": "a boat", "n": 2, "size": "64x32", "seed": 11, "steps": 3,
                                   "negative_prompt": "fog", "guidance_scale": 6.5]
        let reply = try await s.post("/v1/images/generations", body)
        XCTAssertEqual(reply.status, 200, reply.text)
        let data = reply.json["data"] as? [[String: Any]] ?? []
        XCTAssertEqual(data.count, 2)
        XCTAssertNotNil(reply.json["created"] as? Int)
        XCTAssertEqual(reply.json["size"] as? String, "64x32")
        let pipe = try StableDiffusionPipeline(components: model.components)
        var expected: [[UInt8]] = []
        for i in 0..<2 {
            var o = GenerationOptions(prompt: "a boat", negativePrompt: "fog")
            (o.numInferenceSteps, o.guidanceScale, o.width, o.height, o.seed) = (3, 6.5, 64, 32, 11 + UInt64(i))
            expected.append(try libraryPNG(model, o, pipeline: "txt2img") { try pipe($0) }.png)
            assertSamePNG((data[i]["b64_json"] as? String).flatMap { Data(base64Encoded: $0) }, expected[i])
        }
        // response_format=url: a short-lived in-memory file on this server.
        var urlBody = body
        urlBody["response_format"] = "url"
        urlBody["n"] = 1
        let urlReply = try await s.post("/v1/images/generations", urlBody)
        let url = try XCTUnwrap((urlReply.json["data"] as? [[String: Any]])?.first?["url"] as? String)
        XCTAssertTrue(url.hasPrefix(s.base + "/v1/files/img-"), url)
        let file = try await s.get(String(url.dropFirst(s.base.count)))
        XCTAssertEqual(file.status, 200)
        XCTAssertEqual(file.header("content-type"), "image/png")
        assertSamePNG(file.body, expected[0])
        let missing = try await s.get("/v1/files/img-0000/content")
        XCTAssertEqual(missing.status, 404)
        XCTAssertNotNil((missing.json["error"] as? [String: Any])?["message"])
        try await s.stop()
    }

    func testEditsInpaintWithTransparentMask() async throws {
        let s = try await TestServer.start()
        let model = try ServerModels.load("tiny-sd1")
        let image = TestImages.pattern()
        // OpenAI's mask: alpha 0 marks what to repaint (here the right half).
        var rgba = [UInt8](repeating: 255, count: 64 * 64 * 4)
        for y in 0..<64 { for x in 32..<64 { rgba[(y * 64 + x) * 4 + 3] = 0 } }
        let mask = try Image(width: 64, height: 64, channels: 4, pixels: rgba)
        let form = MultipartBuilder()
        form.file("image", "in.png", try image.pngData())
        form.file("mask", "mask.png", try mask.pngData())
        for (k, v) in [("prompt", "a window"), ("n", "1"), ("size", "64x64"), ("seed", "21"), ("steps", "3"), ("strength", "0.9")] { form.field(k, v) }
        let reply = try await s.request("POST", "/v1/images/edits", body: form.data, headers: ["Content-Type": form.contentType])
        XCTAssertEqual(reply.status, 200, reply.text)
        var o = GenerationOptions(prompt: "a window")
        (o.numInferenceSteps, o.guidanceScale, o.width, o.height, o.seed) = (3, 7.5, 64, 64, 21)
        let inpaint = try StableDiffusionInpaintPipeline(components: model.components)
        let expected = try libraryPNG(model, o, pipeline: "inpaint", extra: [("Denoising strength", "0.9")]) {
            try inpaint($0, image: image, mask: TestImages.rightHalfMask(), strength: 0.9)
        }
        let b64 = (reply.json["data"] as? [[String: Any]])?.first?["b64_json"] as? String
        assertSamePNG(b64.flatMap { Data(base64Encoded: $0) }, expected.png)

        // No mask and an opaque image: nothing says what to edit.
        let noMask = MultipartBuilder()
        noMask.file("image", "in.png", try image.pngData())
        noMask.field("prompt", "x")
        let bad = try await s.request("POST", "/v1/images/edits", body: noMask.data, headers: ["Content-Type": noMask.contentType])
        XCTAssertEqual(bad.status, 422)
        XCTAssertEqual((bad.json["error"] as? [String: Any])?["param"] as? String, "mask")
        try await s.stop()
    }
}

/// multipart/form-data bodies as the openai package sends them.
final class MultipartBuilder {
    let boundary = "----sdtest\(UInt32.random(in: 0...UInt32.max))"
    private(set) var data = Data()
    var contentType: String { "multipart/form-data; boundary=\(boundary)" }

    func field(_ name: String, _ value: String) {
        data.append(Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n".utf8))
        close()
    }

    func file(_ name: String, _ filename: String, _ bytes: [UInt8]) {
        data.append(Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"; filename=\"\(filename)\"\r\nContent-Type: image/png\r\n\r\n".utf8))
        data.append(Data(bytes))
        data.append(Data("\r\n".utf8))
        close()
    }

    /// Keeps the closing delimiter last after every addition.
    private func close() {
        let end = Data("--\(boundary)--\r\n".utf8)
        if let r = data.range(of: end) { data.removeSubrange(r) }
        data.append(end)
    }
}
