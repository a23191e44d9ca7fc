import Foundation
import XCTest
import StableDiffusion

/// `--controlnet MODEL[:SCALE] --control-image FILE` on `sd txt2img`, `img2img` and `inpaint`: the pictures of the
/// diffusers fixtures (Scripts/reference/gen_controlnet_fixtures.py), the infotext, and the flag errors.
final class ControlNetCLITests: XCTestCase {
    func fixture(_ c: PipelineCase, _ name: String) -> String { c.directory.appendingPathComponent(name).path }

    func testTextToImageWithScaleFromTheFlag() throws {
        let out = try temporaryFolder(self)
        let c = try PipelineCase("cn_sd1_txt2img")
        let path = out.appendingPathComponent("cn.png").path
        let r = try SDProcess.run(["txt2img", "--model", TinyModels.sd1.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                                   "--negative-prompt", c.json["negative_prompt"]?.stringValue ?? "", "--steps", "6", "--seed", "91",
                                   "--controlnet", TinyModels.controlNetSD1.path + ":0.8", "--control-image", fixture(c, "control0.png"),
                                   "--output", path])
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertPNGMatches(path, c)
        let image = try Image.load(path: path)
        XCTAssertEqual([image.width, image.height], [72, 56])
        let text = try PNGCodec.textChunks(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
        let params = text.first { $0.0 == "parameters" }?.1 ?? ""
        XCTAssertTrue(params.contains("ControlNet 0: \"Module: none, Model: tiny-controlnet-sd1, Weight: 0.8"), params)
    }

    func testGuessModeAndImageToImage() throws {
        let out = try temporaryFolder(self)
        var c = try PipelineCase("cn_sd1_guess")
        var path = out.appendingPathComponent("guess.png").path
        var r = try SDProcess.run(["txt2img", "--model", TinyModels.sd1.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                                   "--negative-prompt", c.json["negative_prompt"]?.stringValue ?? "", "--steps", "5", "--seed", "93",
                                   "--guidance-scale", "4", "--height", "64", "--width", "64", "--guess-mode",
                                   "--controlnet", TinyModels.controlNetSD1.path, "--control-image", fixture(c, "control0.png"), "--output", path])
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertPNGMatches(path, c)

        // img2img: no scale given, so diffusers' image-to-image default 0.8 applies.
        c = try PipelineCase("cn_sd1_img2img")
        path = out.appendingPathComponent("i2i.png").path
        r = try SDProcess.run(["img2img", "--model", TinyModels.sd1.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                               "--negative-prompt", c.json["negative_prompt"]?.stringValue ?? "", "--steps", "6", "--seed", "94",
                               "--strength", "0.7", "--image", fixture(c, "input.png"),
                               "--controlnet", TinyModels.controlNetSD1.path, "--control-image", fixture(c, "control0.png"), "--output", path])
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertPNGMatches(path, c)
    }

    func testInpaintWithPaddingMaskCrop() throws {
        let out = try temporaryFolder(self)
        let c = try PipelineCase("cn_sd1_inpaint9_crop")
        let path = out.appendingPathComponent("inpaint.png").path
        let r = try SDProcess.run(["inpaint", "--model", TinyModels.inpainting.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                                   "--negative-prompt", c.json["negative_prompt"]?.stringValue ?? "", "--steps", "6", "--seed", "95",
                                   "--height", "64", "--width", "64", "--padding-mask-crop", "8",
                                   "--image", fixture(c, "input.png"), "--mask", fixture(c, "mask.png"),
                                   "--controlnet", TinyModels.controlNetSD1.path, "--control-image", fixture(c, "control0.png"), "--output", path])
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertPNGMatches(path, c)
    }

    /// Flag errors exit 1 naming the flag, with the usage hint, before anything loads; a ControlNet for another
    /// base model exits 1 naming the mismatch; nothing is written either way.
    func testErrors() throws {
        let out = try temporaryFolder(self)
        let control = fixture(try PipelineCase("cn_sd1_guess"), "control0.png")
        let base = ["txt2img", "--model", TinyModels.sd1.path, "--prompt", "x", "--steps", "2", "--height", "32", "--width", "32",
                    "--output", out.appendingPathComponent("e.png").path]
        for (extra, expected) in [
            (["--controlnet", TinyModels.controlNetSD1.path], "one --control-image per --controlnet"),
            (["--controlnet", TinyModels.controlNetSD1.path, "--control-image", "/no/such.png"], "/no/such.png"),
            (["--controlnet", "/no/such/net", "--control-image", control], "/no/such/net"),
            (["--controlnet", TinyModels.controlNetSD1.path + ":inf", "--control-image", control], "finite"),
            (["--controlnet", TinyModels.controlNetSD1.path, "--control-image", control, "--control-guidance-start", "0.7",
              "--control-guidance-end", "0.5"], "start < end"),
            (["--guess-mode"], "--guess-mode needs a --controlnet"),
        ] {
            let r = try SDProcess.run(base + extra)
            XCTAssertEqual(r.status, 1, "\(extra): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("Run 'sd help"), "\(extra): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(expected), "\(extra): \(r.stderr)")
        }
        let r = try SDProcess.run(base + ["--controlnet", TinyModels.controlNetSDXL.path, "--control-image", control])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("does not fit"), r.stderr)
        XCTAssertEqual(filesIn(out), [])
    }
}
