import Foundation
import XCTest
import StableDiffusion

/// The `sd` command line: the contract in ARCHITECTURE.md, parity of what it writes, and its failures
/// (status 1, a message on stderr, no file written).
final class CLITests: XCTestCase {
    func testTxt2ImgWritesDiffusersImagesWithParameters() throws {
        let out = try temporaryFolder(self)
        let c = try PipelineCase("sd1_txt2img")
        let r = try SDProcess.run(["txt2img", "--model", TinyModels.sd1.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                                   "--negative-prompt", c.json["negative_prompt"]?.stringValue ?? "", "--height", "64", "--width", "96",
                                   "--steps", "8", "--num-images", "2", "--seed", "42", "--output", out.appendingPathComponent("img.png").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(filesIn(out), ["img-0.png", "img-1.png"])
        for (i, expected) in try c.expectedImages().enumerated() {
            let path = out.appendingPathComponent("img-\(i).png").path
            let image = try Image.load(path: path)
            let (p, m) = psnr(image.pixels.map(Float.init), expected.scalars)
            XCTAssertGreaterThanOrEqual(p, 40)
            XCTAssertLessThanOrEqual(m, 16)
            let text = try PNGCodec.textChunks(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
            XCTAssertTrue(text["parameters"]?.contains("Seed: 42") ?? false, "\(text)")
            XCTAssertTrue(text["parameters"]?.contains("Sampler: PNDMScheduler") ?? false, "\(text)")
        }
    }

    func testSingleImageUsesTheGivenNameAndSchedulerSwitch() throws {
        let out = try temporaryFolder(self)
        let r = try SDProcess.run(["txt2img", "--model", TinyModels.sd2.path, "--prompt", "x", "--steps", "2", "--height", "32",
                                   "--width", "32", "--scheduler", "dpm++2m-karras", "--output", out.appendingPathComponent("one.png").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(filesIn(out), ["one.png"])
        XCTAssertTrue(r.stderr.contains("step 2/2"), r.stderr)
    }

    func testImg2ImgAndInpaintMatchDiffusers() throws {
        let out = try temporaryFolder(self)
        let c = try PipelineCase("sd1_img2img_euler_a")
        var r = try SDProcess.run(["img2img", "--model", TinyModels.sd1.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                                   "--negative-prompt", c.json["negative_prompt"]?.stringValue ?? "", "--steps", "10", "--seed", "3",
                                   "--scheduler", "euler-a", "--strength", "0.6",
                                   "--image", c.directory.appendingPathComponent("input.png").path, "--output", out.appendingPathComponent("a.png").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        var (p, _) = psnr(try Image.load(path: out.appendingPathComponent("a.png").path).pixels.map(Float.init), try c.expectedImages()[0].scalars)
        XCTAssertGreaterThanOrEqual(p, 40)

        let ic = try PipelineCase("inpaint9_crop")
        r = try SDProcess.run(["inpaint", "--model", TinyModels.inpainting.path, "--prompt", ic.json["prompt"]?.stringValue ?? "",
                               "--negative-prompt", ic.json["negative_prompt"]?.stringValue ?? "", "--steps", "6", "--seed", "21",
                               "--height", "64", "--width", "64", "--num-images", "2", "--padding-mask-crop", "8",
                               "--image", ic.directory.appendingPathComponent("input.png").path,
                               "--mask", ic.directory.appendingPathComponent("mask.png").path, "--output", out.appendingPathComponent("b.png").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        for (i, e) in try ic.expectedImages().enumerated() {
            (p, _) = psnr(try Image.load(path: out.appendingPathComponent("b-\(i).png").path).pixels.map(Float.init), e.scalars)
            XCTAssertGreaterThanOrEqual(p, 40)
        }
    }

    func testUpscaleMatchesDiffusersAndBoundsNoiseLevel() throws {
        let out = try temporaryFolder(self)
        let c = try PipelineCase("upscale_x4")
        var r = try SDProcess.run(["upscale", "--model", TinyModels.upscaler.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                                   "--negative-prompt", c.json["negative_prompt"]?.stringValue ?? "", "--steps", "6", "--seed", "31",
                                   "--num-images", "2", "--noise-level", "20",
                                   "--image", c.directory.appendingPathComponent("input.png").path, "--output", out.appendingPathComponent("u.png").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        for (i, e) in try c.expectedImages().enumerated() {
            let (p, _) = psnr(try Image.load(path: out.appendingPathComponent("u-\(i).png").path).pixels.map(Float.init), e.scalars)
            XCTAssertGreaterThanOrEqual(p, 40)
        }
        r = try SDProcess.run(["upscale", "--model", TinyModels.upscaler.path, "--prompt", "x", "--noise-level", "351",
                               "--image", c.directory.appendingPathComponent("input.png").path, "--output", out.appendingPathComponent("v.png").path])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("350"), r.stderr)
        XCTAssertEqual(filesIn(out), ["u-0.png", "u-1.png"])
    }

    func testDepth2ImgWithDepthFileMatchesDiffusers() throws {
        let out = try temporaryFolder(self)
        let c = try PipelineCase("depth_given")
        let r = try SDProcess.run(["depth2img", "--model", TinyModels.depth.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                                   "--negative-prompt", c.json["negative_prompt"]?.stringValue ?? "", "--steps", "8", "--seed", "41",
                                   "--num-images", "2", "--strength", "0.7", "--image", c.directory.appendingPathComponent("input.png").path,
                                   "--depth-map", c.directory.appendingPathComponent("depth.npy").path,
                                   "--output", out.appendingPathComponent("d.png").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        for (i, e) in try c.expectedImages().enumerated() {
            let (p, _) = psnr(try Image.load(path: out.appendingPathComponent("d-\(i).png").path).pixels.map(Float.init), e.scalars)
            XCTAssertGreaterThanOrEqual(p, 40)
        }
    }

    /// Bad input: status 1, a message naming the problem, nothing written.
    func testFailuresWriteNothing() throws {
        let out = try temporaryFolder(self)
        let target = out.appendingPathComponent("x.png").path
        let model = TinyModels.sd1.path
        let broken = try brokenModel()
        let validImage = try PipelineCase("sd1_img2img_euler_a").directory.appendingPathComponent("input.png").path
        let garbage = out.appendingPathComponent("garbage.png")
        try Data("not an image".utf8).write(to: garbage)
        let cases: [([String], String)] = [
            (["txt2img", "--model", model, "--prompt", "x", "--height", "60", "--output", target], "multiple of 8"),
            (["txt2img", "--model", model, "--prompt", "x", "--steps", "0", "--output", target], "--steps"),
            (["txt2img", "--model", model, "--prompt", "x", "--num-images", "0", "--output", target], "--num-images"),
            (["txt2img", "--model", model, "--prompt", "x", "--scheduler", "magic", "--output", target], "--scheduler"),
            (["txt2img", "--model", "/nonexistent", "--prompt", "x", "--output", target], "/nonexistent"),
            (["txt2img", "--model", broken.path, "--prompt", "x", "--output", target], "diffusion_pytorch_model.safetensors"),
            (["txt2img", "--model", model, "--prompt", "x", "--output", "/nonexistent/dir/x.png"], "/nonexistent/dir"),
            (["img2img", "--model", model, "--prompt", "x", "--image", garbage.path, "--strength", "0.5", "--output", target], "garbage.png"),
            (["img2img", "--model", model, "--prompt", "x", "--image", garbage.path, "--strength", "1.5", "--output", target], "--strength"),
            (["inpaint", "--model", model, "--prompt", "x", "--image", garbage.path, "--output", target], "--mask"),
            (["inpaint", "--model", model, "--prompt", "x", "--image", validImage, "--mask", garbage.path, "--output", target], "garbage.png"),
            (["inpaint", "--model", model, "--prompt", "x", "--image", validImage, "--mask", "/nonexistent-mask.png", "--output", target],
             "nonexistent-mask.png"),
            (["txt2img", "--model", model, "--prompt", "x", "--seed", "-3", "--output", target], "seed"),
            (["depth2img", "--model", TinyModels.depth.path, "--prompt", "x", "--image", garbage.path, "--output", target], "garbage.png"),
            (["depth2img", "--model", TinyModels.depth.path, "--prompt", "x", "--image", validImage, "--depth-map", "/nonexistent.npy",
              "--output", target], "nonexistent.npy"),
            (["txt2img", "--model", TinyModels.upscaler.path, "--prompt", "x", "--output", target], "4-channel"),
        ]
        for (args, mention) in cases {
            let r = try SDProcess.run(args)
            XCTAssertEqual(r.status, 1, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(mention), "\(args): expected '\(mention)' in: \(r.stderr)")
            XCTAssertEqual(filesIn(out), ["garbage.png"], "\(args) wrote something")
        }
    }

    /// A copy of the tiny model with its UNet weights truncated.
    private func brokenModel() throws -> URL {
        let dir = try temporaryFolder(self).appendingPathComponent("model")
        try FileManager.default.copyItem(at: TinyModels.sd1, to: dir)
        let weights = dir.appendingPathComponent("unet/diffusion_pytorch_model.safetensors")
        let data = try Data(contentsOf: weights)
        try data.prefix(data.count / 2).write(to: weights)
        return dir
    }
}
