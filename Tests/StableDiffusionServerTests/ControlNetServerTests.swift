import Foundation
import XCTest
import StableDiffusion
import StableDiffusionServer

/// sd-webui-controlnet's API on `sd serve --controlnet`: the lists, `alwayson_scripts.controlnet` units on txt2img
/// and img2img (the pictures are the library's with the same ControlNet units), `/controlnet/detect`, and every
/// bad unit a 422 naming it.
final class ControlNetServerTests: XCTestCase {
    static let served = Result { () throws -> ServedModel in
        try ServedModel.load(model: ServerModels.root.appendingPathComponent("tiny-sd1").path,
                             controlNets: [ServerModels.root.appendingPathComponent("tiny-controlnet-sd1").path])
    }

    /// The library options of the requests below (the server's A1111 defaults: CFG 7, sampler "Euler").
    func options(seed: UInt64, steps: Int = 3, size: Int = 64) -> GenerationOptions {
        var o = GenerationOptions(prompt: "a red cube")
        (o.numInferenceSteps, o.guidanceScale, o.width, o.height, o.seed, o.scheduler) = (steps, 7, size, size, seed, "euler")
        return o
    }

    /// The served picture equals the library's (a count of differing bytes, not two arrays, on failure).
    func assertSamePixels(_ reply: TestServer.Reply, _ expected: GenerationResult, file: StaticString = #filePath, line: UInt = #line) throws {
        let got = try Image.decode(data: Array(try XCTUnwrap(reply.images.first, String(reply.text.prefix(300))))).pixels
        let want = try expected.rgbImages()[0].pixels
        XCTAssertEqual(got.count, want.count, file: file, line: line)
        let differing = zip(got, want).filter { $0 != $1 }.count
        XCTAssertEqual(differing, 0, "\(differing) bytes differ from the library's picture", file: file, line: line)
    }

    func testListsAndGeneration() async throws {
        let served = try Self.served.get()
        let net = try XCTUnwrap(served.controlNets.first).model
        let s = try await TestServer.start(served: served)
        let list = try await s.get("/controlnet/model_list").json
        XCTAssertEqual(list["model_list"] as? [String], ["tiny-controlnet-sd1"])
        let modules = try await s.get("/controlnet/module_list").json
        XCTAssertEqual(modules["module_list"] as? [String], ["none", "canny"], "depth needs a depth model's estimator")
        XCTAssertNotNil((modules["module_detail"] as? [String: Any])?["canny"])
        let version = try await s.get("/controlnet/version").json
        XCTAssertEqual(version["version"] as? Int, 2)

        // txt2img, module none, "Just Resize" (diffusers' fit), a control image of another size.
        let control = TestImages.pattern(80, 48)
        var reply = try await s.post("/sdapi/v1/txt2img", [
            "prompt": "a red cube", "seed": 5, "steps": 3, "width": 64, "height": 64,
            "alwayson_scripts": ["ControlNet": ["args": [["enabled": true, "module": "none", "model": "tiny-controlnet-sd1 [abcd1234]",
                                                          "weight": 0.7, "image": TestImages.base64(control), "resize_mode": "Just Resize",
                                                          "guidance_end": 0.7]]]]])
        XCTAssertEqual(reply.status, 200, reply.text)
        var o = options(seed: 5)
        o.controlNets = [ControlNetUnit(model: net, image: control, conditioningScale: 0.7, guidanceEnd: 0.7)]
        try assertSamePixels(reply, try StableDiffusionPipeline(components: served.components)(o))
        let infotext = (reply.info["infotexts"] as? [String])?.first ?? ""
        XCTAssertTrue(infotext.contains("ControlNet 0: \"Module: none, Model: tiny-controlnet-sd1 [abcd1234], Weight: 0.7"), infotext)

        // canny at the picture's own resolution (processor_res = its short side: no resize before the detector),
        // "ControlNet is more important" (guess mode), a disabled second unit that is ignored.
        let picture = TestImages.pattern(64, 64)
        reply = try await s.post("/sdapi/v1/txt2img", [
            "prompt": "a red cube", "seed": 6, "steps": 3, "width": 64, "height": 64,
            "alwayson_scripts": ["controlnet": ["args": [
                ["module": "canny", "model": "tiny-controlnet-sd1", "image": TestImages.base64(picture), "processor_res": 64,
                 "threshold_a": 20, "threshold_b": 60, "control_mode": 2, "resize_mode": 0],
                ["enabled": false, "model": "no-such-net"]]]]])
        XCTAssertEqual(reply.status, 200, reply.text)
        o = options(seed: 6)
        o.controlNets = [ControlNetUnit(model: net, image: try CannyEdges.detect(picture, low: 20, high: 60).hwc3())]
        o.guessMode = true
        try assertSamePixels(reply, try StableDiffusionPipeline(components: served.components)(o))

        // img2img: a unit without an image uses the input picture; "My prompt is more important".
        reply = try await s.post("/sdapi/v1/img2img", [
            "prompt": "a red cube", "seed": 7, "steps": 4, "denoising_strength": 0.6, "init_images": [TestImages.base64(picture)],
            "width": 64, "height": 64,
            "alwayson_scripts": ["controlnet": ["args": [["model": "tiny-controlnet-sd1", "resize_mode": 0, "control_mode": 1]]]]])
        XCTAssertEqual(reply.status, 200, reply.text)
        o = options(seed: 7, steps: 4)
        o.controlNets = [ControlNetUnit(model: net, image: picture, conditioningScale: 1, decayingScales: true)]
        let img2img = try StableDiffusionImg2ImgPipeline(components: served.components)
        try assertSamePixels(reply, try img2img(o, image: picture, strength: 0.6))

        // /controlnet/detect with webuiapi's field names.
        reply = try await s.post("/controlnet/detect", ["controlnet_module": "canny", "controlnet_images": [TestImages.base64(picture)],
                                                        "controlnet_processor_res": 64, "controlnet_threshold_a": 20, "controlnet_threshold_b": 60])
        XCTAssertEqual(reply.status, 200, reply.text)
        let detected = try Image.decode(data: Array(try XCTUnwrap(reply.images.first)))
        XCTAssertEqual(detected.pixels, try CannyEdges.detect(picture, low: 20, high: 60).hwc3().pixels)
        try await s.stop()
    }

    func testBadUnitsAre422NamingTheField() async throws {
        let s = try await TestServer.start(served: try Self.served.get())
        let image = TestImages.base64(TestImages.pattern(64, 64))
        for (unit, expected) in [
            (["model": "control_v11p_sd15_canny", "image": image], "is not loaded; this server has tiny-controlnet-sd1"),
            (["model": "None", "image": image], "choose a ControlNet model"),
            (["model": "tiny-controlnet-sd1", "image": image, "module": "depth"], "this server has none, canny"),
            (["model": "tiny-controlnet-sd1"], "txt2img needs a control image"),
            (["model": "tiny-controlnet-sd1", "image": image, "weight": 3], "weight"),
            (["model": "tiny-controlnet-sd1", "image": image, "guidance_start": 0.8, "guidance_end": 0.2], "must be below guidance_end"),
            (["model": "tiny-controlnet-sd1", "image": ["image": image, "mask": image]], "unit masks are not supported"),
            (["model": "tiny-controlnet-sd1", "image": "not base64!"], "image"),
            (["model": "tiny-controlnet-sd1", "image": image, "resize_mode": "Stretch"], "resize_mode"),
        ] as [([String: Any], String)] {
            let reply = try await s.post("/sdapi/v1/txt2img", ["prompt": "x", "steps": 2, "width": 64, "height": 64,
                                                               "alwayson_scripts": ["controlnet": ["args": [unit]]]])
            XCTAssertEqual(reply.status, 422, "\(unit): \(reply.text)")
            XCTAssertTrue(reply.text.contains("alwayson_scripts") && reply.text.contains(expected), "\(expected): \(reply.text.prefix(400))")
        }
        let many = [[String: Any]](repeating: ["model": "tiny-controlnet-sd1", "image": image], count: 5)
        var reply = try await s.post("/sdapi/v1/txt2img", ["prompt": "x", "alwayson_scripts": ["controlnet": ["args": many]]])
        XCTAssertEqual(reply.status, 422, reply.text)
        reply = try await s.post("/sdapi/v1/txt2img", ["prompt": "x", "alwayson_scripts": ["controlnet": "yes"]])
        XCTAssertEqual(reply.status, 422, reply.text)
        reply = try await s.post("/controlnet/detect", ["controlnet_module": "openpose", "controlnet_input_images": [image]])
        XCTAssertEqual(reply.status, 422, reply.text)
        XCTAssertTrue(reply.text.contains("controlnet_module"), reply.text)
        reply = try await s.post("/controlnet/detect", ["controlnet_module": "canny"])
        XCTAssertEqual(reply.status, 422, reply.text)
        try await s.stop()
    }
}
