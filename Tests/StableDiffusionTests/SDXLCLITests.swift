import Foundation
import XCTest
import StableDiffusion

/// `sd txt2img|img2img` on an SDXL folder: the same commands choose diffusers' SDXL pipelines from the
/// folder, with SDXL's defaults (guidance 5.0, img2img strength 0.3, 1024 from the config) and flags.
final class SDXLCLITests: XCTestCase {
    func assertMatches(_ path: URL, _ c: PipelineCase, image i: Int = 0, file: StaticString = #filePath, line: UInt = #line) throws {
        try assertPNGMatches(path.path, c, image: i, file: file, line: line)
    }

    func testTxt2ImgMicroConditioningFlagsAndDefaultGuidance() throws {
        let out = try temporaryFolder(self)
        let c = try PipelineCase("sdxl_txt2img_micro_cli")
        let r = try SDProcess.run(["txt2img", "--model", TinyModels.sdxl.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                                   "--height", "64", "--width", "64", "--steps", "4", "--seed", "9", "--original-size", "192x256",
                                   "--crops-coords-top-left", "16,8", "--target-size", "64x96", "--output", out.appendingPathComponent("a.png").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertMatches(out.appendingPathComponent("a.png"), c)
    }

    /// SDXL-Turbo's recipe on a plain SDXL folder: Euler ancestral with "trailing" spacing, 1 step, guidance 0,
    /// gives the picture diffusers makes with Turbo's own scheduler config; a bad spacing is refused by name.
    func testTurboRecipeWithTimestepSpacing() throws {
        let out = try temporaryFolder(self)
        let c = try PipelineCase("sdxl_turbo_1step")
        var r = try SDProcess.run(["txt2img", "--model", TinyModels.sdxl.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                                   "--height", "64", "--width", "64", "--steps", "1", "--guidance-scale", "0", "--seed", "21",
                                   "--scheduler", "euler-a", "--timestep-spacing", "trailing", "--output", out.appendingPathComponent("t.png").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertMatches(out.appendingPathComponent("t.png"), c)
        r = try SDProcess.run(["txt2img", "--model", TinyModels.sdxl.path, "--prompt", "x", "--timestep-spacing", "karras",
                               "--output", out.appendingPathComponent("u.png").path])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("--timestep-spacing"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("u.png").path))
    }

    func testTxt2ImgSecondPromptsAndSchedulerSwitch() throws {
        let out = try temporaryFolder(self)
        var c = try PipelineCase("sdxl_txt2img_zero_negative")
        var r = try SDProcess.run(["txt2img", "--model", TinyModels.sdxl.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                                   "--prompt-2", c.json["prompt_2"]?.stringValue ?? "", "--steps", "5", "--guidance-scale", "6",
                                   "--seed", "7", "--output", out.appendingPathComponent("b.png").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertMatches(out.appendingPathComponent("b.png"), c)
        XCTAssertEqual(try Image.load(path: out.appendingPathComponent("b.png").path).width, 128, "default size from the UNet config")

        c = try PipelineCase("sdxl_txt2img_negative2_euler_a")
        r = try SDProcess.run(["txt2img", "--model", TinyModels.sdxl.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                               "--negative-prompt", c.json["negative_prompt"]?.stringValue ?? "",
                               "--negative-prompt-2", c.json["negative_prompt_2"]?.stringValue ?? "", "--height", "64", "--width", "64",
                               "--steps", "5", "--guidance-scale", "7", "--seed", "11", "--scheduler", "euler-a",
                               "--output", out.appendingPathComponent("c.png").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertMatches(out.appendingPathComponent("c.png"), c)
    }

    func testImg2ImgWithDefaultGuidance() throws {
        let out = try temporaryFolder(self)
        let c = try PipelineCase("sdxl_img2img")
        let r = try SDProcess.run(["img2img", "--model", TinyModels.sdxl.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                                   "--negative-prompt", c.json["negative_prompt"]?.stringValue ?? "", "--steps", "8", "--seed", "3",
                                   "--strength", "0.6", "--image", c.directory.appendingPathComponent("input.png").path,
                                   "--output", out.appendingPathComponent("i.png").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertMatches(out.appendingPathComponent("i.png"), c)
    }

    /// --refiner: the base stops at --refiner-switch and the refiner finishes from its latents (diffusers' ensemble).
    func testRefinerFinishesTheBaseModelsLatents() throws {
        let out = try temporaryFolder(self)
        let c = try PipelineCase("sdxl_base_refiner_ensemble")
        let r = try SDProcess.run(["txt2img", "--model", TinyModels.sdxl.path, "--refiner", TinyModels.sdxlRefiner.path,
                                   "--refiner-switch", "0.7", "--prompt", c.json["prompt"]?.stringValue ?? "",
                                   "--negative-prompt", c.json["negative_prompt"]?.stringValue ?? "", "--steps", "10", "--height", "64",
                                   "--width", "64", "--seed", "17", "--output", out.appendingPathComponent("r.png").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertMatches(out.appendingPathComponent("r.png"), c)
        let text = try PNGCodec.textChunks(Array(try Data(contentsOf: out.appendingPathComponent("r.png"))))["parameters"] ?? ""
        XCTAssertTrue(text.contains("Refiner: tiny-sdxl-refiner") && text.contains("Refiner switch at: 0.7"), text)
        XCTAssertTrue(text.contains("CFG scale: 5.0"), text)
    }

    /// Bad SDXL flags, and SDXL flags on an SD model: status 1, the flag or model family named, nothing written.
    func testFailuresWriteNothing() throws {
        let out = try temporaryFolder(self)
        let target = out.appendingPathComponent("x.png").path
        let xl = TinyModels.sdxl.path, sd1 = TinyModels.sd1.path
        let input = try PipelineCase("sdxl_img2img").directory.appendingPathComponent("input.png").path
        let cases: [([String], String)] = [
            (["txt2img", "--model", xl, "--prompt", "x", "--original-size", "0x64", "--output", target], "--original-size"),
            (["txt2img", "--model", xl, "--prompt", "x", "--target-size", "64", "--output", target], "--target-size"),
            (["txt2img", "--model", xl, "--prompt", "x", "--crops-coords-top-left", "a,b", "--output", target], "--crops-coords-top-left"),
            (["txt2img", "--model", xl, "--prompt", "x", "--aesthetic-score", "nan", "--output", target], "--aesthetic-score"),
            (["txt2img", "--model", sd1, "--prompt", "x", "--prompt-2", "y", "--steps", "1", "--output", target], "SDXL"),
            (["txt2img", "--model", sd1, "--prompt", "x", "--target-size", "64x64", "--steps", "1", "--output", target], "SDXL"),
            (["inpaint", "--model", sd1, "--prompt", "x", "--prompt-2", "y", "--image", input, "--mask", input, "--steps", "1",
              "--output", target], "SDXL"),
            (["inpaint", "--model", xl, "--prompt", "x", "--image", input, "--mask", input, "--strength", "1.5", "--output", target], "--strength"),
            (["txt2img", "--model", xl, "--prompt", "x", "--refiner", TinyModels.sdxlRefiner.path, "--refiner-switch", "1",
              "--output", target], "--refiner-switch"),
            (["txt2img", "--model", xl, "--prompt", "x", "--refiner", "/nonexistent/refiner", "--output", target], "/nonexistent/refiner"),
            (["txt2img", "--model", sd1, "--prompt", "x", "--refiner", TinyModels.sdxlRefiner.path, "--steps", "2", "--output", target],
             "SDXL base"),
            (["txt2img", "--model", xl, "--prompt", "x", "--refiner", sd1, "--steps", "2", "--height", "64", "--width", "64",
              "--output", target], "SD 1.x/2.x"),
            (["txt2img", "--model", TinyModels.sdxlRefiner.path, "--prompt", "x", "--output", target], "refiner"),
        ]
        for (args, mention) in cases {
            let r = try SDProcess.run(args)
            XCTAssertEqual(r.status, 1, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(mention), "\(args): expected '\(mention)' in: \(r.stderr)")
            XCTAssertEqual(filesIn(out), [], "\(args) wrote something")
        }
    }
}

/// `sd bench --suite sdxl` runs every SDXL case (here on the tiny SDXL configs) and reports them as JSON.
final class SDXLBenchTests: XCTestCase {
    func testSDXLSuiteOnTinyConfigs() throws {
        let r = try SDProcess.run(["bench", "--suite", "sdxl", "--configs", TinyModels.sdxl.path, "--runs", "1", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        let results = object?["results"] as? [String: Any] ?? [:]
        XCTAssertEqual(Set(results.keys), ["unet_1024", "text_encoder", "text_encoder_2", "vae_decode_1024"], r.stdout)
        XCTAssertGreaterThan(((results["unet_1024"] as? [String: Any])?["gflop"] as? Double) ?? 0, 0)
    }
}
