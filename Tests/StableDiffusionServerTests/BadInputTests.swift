import Foundation
import XCTest
import StableDiffusionServer

/// Every malformed request is a 422 (413 for size) naming the field, in the endpoint's dialect; none crashes.
final class BadInputTests: XCTestCase {
    func testA1111ValidationErrorsNameTheField() async throws {
        let s = try await TestServer.start { $0.maxBodyBytes = 1 << 20 }
        let good = TestImages.base64(TestImages.pattern(16, 16))
        let cases: [(String, Any, String)] = [
            ("/sdapi/v1/txt2img", ["steps": "ten"], "steps"),
            ("/sdapi/v1/txt2img", ["steps": 151], "steps"),
            ("/sdapi/v1/txt2img", ["steps": 0], "steps"),
            ("/sdapi/v1/txt2img", ["width": 65], "width"),
            ("/sdapi/v1/txt2img", ["height": 2056], "height"),
            ("/sdapi/v1/txt2img", ["width": 4096, "height": 4096], "width"),
            ("/sdapi/v1/txt2img", ["batch_size": 9], "batch_size"),
            ("/sdapi/v1/txt2img", ["batch_size": 4, "n_iter": 4], "batch_size"),
            ("/sdapi/v1/txt2img", ["cfg_scale": "high"], "cfg_scale"),
            ("/sdapi/v1/txt2img", ["prompt": 5], "prompt"),
            ("/sdapi/v1/txt2img", ["seed": -5], "seed"),
            ("/sdapi/v1/txt2img", ["seed": 1.5], "seed"),
            ("/sdapi/v1/txt2img", ["sampler_name": "Euler b"], "sampler_name"),
            ("/sdapi/v1/txt2img", ["sampler_name": "Euler", "scheduler": "Karras"], "scheduler"),
            ("/sdapi/v1/txt2img", ["scheduler": "nonsense"], "scheduler"),
            ("/sdapi/v1/txt2img", ["enable_hr": true], "enable_hr"),
            ("/sdapi/v1/txt2img", ["send_images": "yes"], "send_images"),
            ("/sdapi/v1/img2img", ["init_images": [good], "denoising_strength": 1.5], "denoising_strength"),
            ("/sdapi/v1/img2img", ["init_images": [good], "denoising_strength": -0.1], "denoising_strength"),
            ("/sdapi/v1/img2img", ["prompt": "x"], "init_images"),
            ("/sdapi/v1/img2img", ["init_images": []], "init_images"),
            ("/sdapi/v1/img2img", ["init_images": "abc"], "init_images"),
            ("/sdapi/v1/img2img", ["init_images": ["!!!not base64!!!"]], "init_images"),
            ("/sdapi/v1/img2img", ["init_images": [Data("hello world, not a picture".utf8).base64EncodedString()]], "init_images"),
            ("/sdapi/v1/img2img", ["init_images": [Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 1, 2, 3]).base64EncodedString()]],
             "init_images"),
            ("/sdapi/v1/img2img", ["init_images": ["https://example.com/cat.png"]], "init_images"),
            ("/sdapi/v1/img2img", ["init_images": ["/etc/passwd"]], "init_images"),
            ("/sdapi/v1/img2img", ["init_images": [good], "mask": "@@@"], "mask"),
            ("/sdapi/v1/img2img", ["init_images": [good], "resize_mode": 2], "resize_mode"),
            ("/sdapi/v1/extra-single-image", ["image": good], "upscaler_1"),
        ]
        for (path, body, field) in cases {
            let r = try await s.post(path, body)
            XCTAssertEqual(r.status, 422, "\(path) \(body): \(r.text)")
            let detail = r.json["detail"] as? [[String: Any]] ?? []
            let fields = detail.compactMap { ($0["loc"] as? [String])?.last }
            XCTAssertTrue(fields.contains(field), "\(body): expected \(field) in \(r.text)")
            XCTAssertNotNil(detail.first?["msg"] as? String)
        }
        let samplerError = try await s.post("/sdapi/v1/txt2img", ["sampler_name": "Euler b"]).text
        XCTAssertTrue(samplerError.contains("Euler a") && samplerError.contains("UniPC"), "known samplers listed: \(samplerError)")

        // Not JSON, not an object, too large.
        for raw in ["{", "[1, 2]", "null", "\"text\"", String(repeating: "[", count: 100_000)] {
            let r = try await s.request("POST", "/sdapi/v1/txt2img", body: Data(raw.utf8), headers: ["Content-Type": "application/json"])
            XCTAssertEqual(r.status, 422, "\(raw.prefix(10)): \(r.text.prefix(200))")
            XCTAssertEqual(((r.json["detail"] as? [[String: Any]])?.first?["loc"] as? [String]), ["body"])
        }
        let big = try await s.request("POST", "/sdapi/v1/txt2img", body: Data(repeating: 32, count: 2 << 20),
                                      headers: ["Content-Type": "application/json"])
        XCTAssertEqual(big.status, 413)
        // Still serving.
        let awaited5 = try await s.get("/sdapi/v1/progress").status
        XCTAssertEqual(awaited5, 200)
        try await s.stop()
    }

    func testOpenAIErrorsHaveOpenAIShape() async throws {
        let s = try await TestServer.start()
        let cases: [([String: Any], String)] = [
            (["prompt": "x", "size": "abc"], "size"),
            (["prompt": "x", "size": "100x100"], "size"),
            (["prompt": "x", "size": "4096x4096"], "size"),
            (["prompt": "x", "n": 0], "n"),
            (["prompt": "x", "n": 99], "n"),
            (["prompt": "x", "response_format": "jpeg"], "response_format"),
            (["prompt": ""], "prompt"),
            (["prompt": "x", "steps": 1000], "steps"),
            (["prompt": "x", "output_format": "webp"], "output_format"),
        ]
        for (body, param) in cases {
            let r = try await s.post("/v1/images/generations", body)
            XCTAssertEqual(r.status, 422, "\(body): \(r.text)")
            let error = r.json["error"] as? [String: Any] ?? [:]
            XCTAssertEqual(error["param"] as? String, param, r.text)
            XCTAssertEqual(error["type"] as? String, "invalid_request_error")
            XCTAssertNotNil(error["message"] as? String)
            XCTAssertTrue(error.keys.contains("code"))
        }
        // Multipart problems.
        var r = try await s.request("POST", "/v1/images/edits", body: Data("x".utf8), headers: ["Content-Type": "application/json"])
        XCTAssertEqual(r.status, 422)
        r = try await s.request("POST", "/v1/images/edits", body: Data("--b\r\nbroken".utf8), headers: ["Content-Type": "multipart/form-data; boundary=b"])
        XCTAssertEqual(r.status, 422)
        let form = MultipartBuilder()
        form.file("image", "x.png", Array("not a png".utf8))
        form.field("prompt", "x")
        r = try await s.request("POST", "/v1/images/edits", body: form.data, headers: ["Content-Type": form.contentType])
        XCTAssertEqual(r.status, 422)
        XCTAssertEqual((r.json["error"] as? [String: Any])?["param"] as? String, "image")
        try await s.stop()
    }

    func testHugeImagesAreRefusedFromTheirHeaderBeforeDecoding() async throws {
        let s = try await TestServer.start()
        // A PNG whose IHDR claims 5000x5000 (never decoded), and a JPEG whose SOF0 (after APP0) claims 5000x4000.
        var png = try TestImages.pattern(8, 8).pngData()
        png.replaceSubrange(16..<24, with: [0, 0, 0x13, 0x88, 0, 0, 0x13, 0x88])
        let jpeg: [UInt8] = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10] + Array("JFIF".utf8) + [0, 1, 1, 0, 0, 1, 0, 1, 0, 0]
            + [0xFF, 0xC0, 0x00, 0x11, 0x08, 0x0F, 0xA0, 0x13, 0x88, 0x03] + [UInt8](repeating: 0, count: 12)
        for (bytes, size) in [(png, "5000x5000"), (jpeg, "5000x4000")] {
            let r = try await s.post("/sdapi/v1/img2img", ["init_images": [Data(bytes).base64EncodedString()]])
            XCTAssertEqual(r.status, 422)
            XCTAssertTrue(r.text.contains(size) && r.text.contains("init_images"), r.text)
        }
        try await s.stop()
    }
}
