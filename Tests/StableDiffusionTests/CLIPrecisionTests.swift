import Foundation
import XCTest
import StableDiffusion

/// `--precision` on the command line: bf16 pictures stay within the parity bar of diffusers' fp32 ones
/// but are not the fp32 pictures (the flag reached the models), and bad values are refused.
final class CLIPrecisionTests: XCTestCase {
    func requireBF16() throws {
        try XCTSkipIf(ComputePrecision.bf16.unsupportedReason() != nil, "this CPU or build has no bf16 compute")
    }

    func images(_ folder: URL, _ stem: String, count: Int) throws -> [[Float]] {
        try (0..<count).map { try Image.load(path: folder.appendingPathComponent("\(stem)-\($0).png").path).pixels.map(Float.init) }
    }

    func testTxt2ImgBF16StaysNearDiffusersButDiffersFromFP32() throws {
        try requireBF16()
        let out = try temporaryFolder(self)
        let c = try PipelineCase("sd1_txt2img")
        func run(_ precision: String, _ stem: String) throws {
            let r = try SDProcess.run(["txt2img", "--model", TinyModels.sd1.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                                       "--negative-prompt", c.json["negative_prompt"]?.stringValue ?? "", "--height", "64", "--width", "96",
                                       "--steps", "8", "--num-images", "2", "--seed", "42", "--precision", precision,
                                       "--output", out.appendingPathComponent("\(stem).png").path])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        try run("fp32", "f")
        try run("bf16", "b")
        let fp32 = try images(out, "f", count: 2), bf16 = try images(out, "b", count: 2)
        for (i, expected) in try c.expectedImages().enumerated() {
            let (p, m) = psnr(bf16[i], expected.scalars)
            XCTAssertGreaterThanOrEqual(p, 40, "image \(i)")
            XCTAssertLessThanOrEqual(m, 16, "image \(i)")
            XCTAssertNotEqual(bf16[i], fp32[i], "image \(i): --precision bf16 drew the fp32 picture")
        }
    }

    /// depth2img loads a folder through its own path (with the depth estimator); the flag must reach it.
    func testDepth2ImgBF16() throws {
        try requireBF16()
        let out = try temporaryFolder(self)
        let c = try PipelineCase("depth_given")
        let r = try SDProcess.run(["depth2img", "--model", TinyModels.depth.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                                   "--negative-prompt", c.json["negative_prompt"]?.stringValue ?? "", "--steps", "8", "--seed", "41",
                                   "--num-images", "2", "--strength", "0.7", "--image", c.directory.appendingPathComponent("input.png").path,
                                   "--depth-map", c.directory.appendingPathComponent("depth.npy").path, "--precision", "bf16",
                                   "--output", out.appendingPathComponent("d.png").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let got = try images(out, "d", count: 2)
        for (i, e) in try c.expectedImages().enumerated() {
            XCTAssertGreaterThanOrEqual(psnr(got[i], e.scalars).psnr, 40, "image \(i)")
        }
    }

    func testBadPrecisionIsRefusedNamingTheFlag() throws {
        let out = try temporaryFolder(self)
        for command in [["txt2img", "--model", TinyModels.sd1.path, "--prompt", "x", "--output", out.appendingPathComponent("x.png").path],
                        ["bench", "--suite", "ops", "--runs", "1"]] {
            let r = try SDProcess.run(command + ["--precision", "fp16"])
            XCTAssertEqual(r.status, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains("--precision"), r.stderr)
            XCTAssertEqual(filesIn(out), [])
        }
    }

    func testBenchReportsItsPrecision() throws {
        try requireBF16()
        let r = try SDProcess.run(["bench", "--suite", "ops", "--runs", "1", "--precision", "bf16", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("\"precision\":\"bf16\""), r.stdout)
    }
}
