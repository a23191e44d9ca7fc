import Foundation
import XCTest
import StableDiffusion

/// `sd` with single-file checkpoints: `--model FILE [--config DIR] [--prediction-type]`, and `sd convert`.
final class SingleFileCLITests: XCTestCase {
    func args(_ c: PipelineCase) -> [String] {
        ["--prompt", c.json["prompt"]?.stringValue ?? "", "--negative-prompt", c.json["negative_prompt"]?.stringValue ?? "",
         "--height", "64", "--width", "64", "--steps", "4", "--seed", String(c.json["seed"]?.intValue ?? 0)]
    }

    func testTxt2ImgFromSingleFileMatchesDiffusers() throws {
        let out = try temporaryFolder(self)
        let c = try PipelineCase(singleFile: "sd1")
        let png = out.appendingPathComponent("a.png").path
        let r = try SDProcess.run(["txt2img", "--model", SingleFileFixtures.checkpoint("tiny-sd1.safetensors").path,
                                   "--config", TinyModels.sd1.path, "--verbose", "--output", png] + args(c))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("loaded tiny-sd1.safetensors"), r.stderr)
        let (p, m) = psnr(try Image.load(path: png).pixels.map(Float.init), try c.expectedImages()[0].scalars)
        XCTAssertGreaterThanOrEqual(p, 40)
        XCTAssertLessThanOrEqual(m, 16)
        let text = try PNGCodec.textChunks(Array(try Data(contentsOf: URL(fileURLWithPath: png))))
        XCTAssertTrue(text["parameters"]?.contains("Model: tiny-sd1.safetensors") ?? false, "\(text)")
    }

    /// `sd convert` writes a diffusers folder the folder loader reads back to the same picture.
    func testConvertRoundTrip() throws {
        let out = try temporaryFolder(self)
        let folder = out.appendingPathComponent("converted")
        var r = try SDProcess.run(["convert", "--from", SingleFileFixtures.checkpoint("tiny-sd2.safetensors").path, "--to", folder.path,
                                   "--config", TinyModels.sd2.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(filesIn(folder), ["model_index.json", "scheduler", "text_encoder", "tokenizer", "unet", "vae"])
        let c = try PipelineCase(singleFile: "sd2")
        let result = try StableDiffusionPipeline(modelDirectory: folder)(c.options)
        assertImagesMatch(result, try c.expectedImages())
        // An existing, non-empty output folder is refused and left alone.
        r = try SDProcess.run(["convert", "--from", SingleFileFixtures.checkpoint("tiny-sd2.safetensors").path, "--to", folder.path,
                               "--config", TinyModels.sd2.path])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("not empty"), r.stderr)
        XCTAssertEqual(filesIn(folder).count, 6)
    }

    /// `sd` refuses an embedding or a checkpoint carrying a code-execution payload: status 1, file and global named.
    func testPicklePayloadsFailNamingFileAndGlobal() throws {
        let out = try temporaryFolder(self)
        let target = out.appendingPathComponent("x.png").path
        let embedding = try FixturePaths.url("pickle/payload_os_system.pt").path
        let checkpoint = try FixturePaths.url("pickle/payload.ckpt").path
        let small = ["--prompt", "emb-pt", "--steps", "1", "--height", "32", "--width", "32", "--output", target]
        let cases: [([String], String, String)] = [
            (["txt2img", "--model", TinyModels.sd1.path, "--embedding", embedding] + small, embedding, "os.system"),
            (["txt2img", "--model", checkpoint, "--config", TinyModels.sd1.path] + small, checkpoint, "posix.system"),
        ]
        for (arguments, file, global) in cases {
            let r = try SDProcess.run(arguments)
            XCTAssertEqual(r.status, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(file) && r.stderr.contains("refused global '\(global)'"), r.stderr)
            XCTAssertEqual(filesIn(out), [], "\(arguments) wrote something")
        }
    }

    func testSingleFileFailuresWriteNothing() throws {
        let out = try temporaryFolder(self)
        let target = out.appendingPathComponent("x.png").path
        let file = try SingleFileFixtures.checkpoint("tiny-sd1.ckpt").path
        let notes = out.appendingPathComponent("notes.txt")
        try Data("x".utf8).write(to: notes)
        let cases: [([String], String)] = [
            // The tiny models' 32-wide cross attention is no known family: a config folder is needed.
            (["txt2img", "--model", file, "--prompt", "x", "--output", target], "unknown architecture"),
            (["txt2img", "--model", notes.path, "--prompt", "x", "--output", target], "is not a folder or a single-file checkpoint"),
            (["txt2img", "--model", "/nonexistent.safetensors", "--prompt", "x", "--output", target], "--model: /nonexistent.safetensors is not a folder"),
            (["txt2img", "--model", file, "--config", "/nonexistent-config", "--prompt", "x", "--output", target], "--config"),
            (["txt2img", "--model", file, "--config", TinyModels.sd1.path, "--prediction-type", "sample", "--prompt", "x", "--output", target],
             "--prediction-type"),
            (["txt2img", "--model", TinyModels.sd1.path, "--config", TinyModels.sd1.path, "--prompt", "x", "--output", target], "single-file"),
            (["txt2img", "--model", file, "--variant", "fp16", "--prompt", "x", "--output", target], "--variant"),
            // A config that does not fit the file (9-channel inpainting UNet for a 4-channel file): the file is named.
            (["txt2img", "--model", file, "--config", TinyModels.inpainting.path, "--prompt", "x", "--output", target], "tiny-sd1.ckpt"),
            (["convert", "--from", TinyModels.sd1.path, "--to", out.appendingPathComponent("c").path], "--from"),
        ]
        for (arguments, mention) in cases {
            let r = try SDProcess.run(arguments)
            XCTAssertEqual(r.status, 1, "\(arguments): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(mention), "\(arguments): expected '\(mention)' in: \(r.stderr)")
            XCTAssertEqual(filesIn(out), ["notes.txt"], "\(arguments) wrote something")
        }
    }
}
