import Foundation
import XCTest
import StableDiffusion

/// The `sd` flags for LoRA, embeddings, prompt syntax and clip skip: same pictures as diffusers, and
/// failures with status 1 and a message naming the file.
final class CLIAdapterTests: XCTestCase {
    func run(_ name: String, _ extra: [String], prompt: String? = nil) throws -> (status: Int32, stderr: String, out: URL) {
        let c = try AdapterFixtures.Case(name)
        let out = try temporaryFolder(self).appendingPathComponent("img.png")
        let o = c.options
        let r = try SDProcess.run(["txt2img", "--model", c.model.path, "--prompt", prompt ?? c.prompt, "--negative-prompt", c.negativePrompt,
                                   "--height", "\(o.height ?? 64)", "--width", "\(o.width ?? 64)", "--steps", "\(o.numInferenceSteps)",
                                   "--guidance-scale", "\(o.guidanceScale)", "--seed", "\(c.seed)", "--output", out.path] + extra)
        if r.status == 0 {
            let (p, m) = psnr(try Image.load(path: out.path).pixels.map(Float.init), c.expected[0].scalars)
            XCTAssertGreaterThanOrEqual(p, 40, name)
            XCTAssertLessThanOrEqual(m, 16, name)
        }
        return (r.status, r.stderr, out)
    }

    func testLoRAFlagAndPromptTag() throws {
        let file = try AdapterFixtures.file("sd1_kohya.safetensors").path
        var r = try run("sd1_kohya", ["--lora", file + ":0.8"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let c = try AdapterFixtures.Case("sd1_kohya")
        r = try run("sd1_kohya", ["--lora-dir", try AdapterFixtures.folder.path], prompt: "<lora:sd1_kohya:0.8>" + c.prompt)
        XCTAssertEqual(r.status, 0, r.stderr)
        let peft = try AdapterFixtures.file("sd1_peft.safetensors").path
        r = try run("sd1_two", ["--lora", file + ":0.7", "--lora", peft + ":0.5"])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func testEmbeddingClipSkipAndPromptSyntaxFlags() throws {
        let f = { (n: String) in try AdapterFixtures.file(n).path }
        var r = try run("embeddings", ["--embedding", try f("a1111.pt"), "--embedding", try f("a1111.safetensors") + ":<st>",
                                       "--embedding", try f("learned_embeds.safetensors"), "--embedding", try f("learned_embeds.bin")])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try run("clip_skip", ["--clip-skip", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try run("a1111_long", ["--prompt-syntax", "a1111"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stderr.contains("warning"), r.stderr)
    }

    func testLongPlainPromptWarns() throws {
        let out = try temporaryFolder(self).appendingPathComponent("w.png")
        let r = try SDProcess.run(["txt2img", "--model", TinyModels.sd1.path, "--prompt", String(repeating: "a ", count: 80) + "lost words",
                                   "--steps", "1", "--height", "32", "--width", "32", "--output", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("lost words") && r.stderr.contains("--prompt-syntax a1111"), r.stderr)
    }

    func testFailuresNameTheFileAndWriteNothing() throws {
        let dir = try temporaryFolder(self)
        let out = dir.appendingPathComponent("x.png").path
        let base = ["txt2img", "--model", TinyModels.sd1.path, "--steps", "1", "--height", "32", "--width", "32", "--output", out]
        let missing = dir.appendingPathComponent("nope.safetensors").path
        var r = try SDProcess.run(base + ["--prompt", "x", "--lora", missing])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains(missing), r.stderr)
        r = try SDProcess.run(base + ["--prompt", "<lora:../evil:1> x", "--lora-dir", dir.path])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("not a path"), r.stderr)
        r = try SDProcess.run(base + ["--prompt", "<lora:x> y"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("--lora-dir"), r.stderr)
        r = try SDProcess.run(base + ["--prompt", "x", "--embedding", missing])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains(missing), r.stderr)
        r = try SDProcess.run(base + ["--prompt", "x", "--prompt-syntax", "comfy"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("plain, a1111"), r.stderr)
        r = try SDProcess.run(base + ["--prompt", "x", "--clip-skip", "-1"])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(filesIn(dir), [])
    }
}

extension CLIAdapterTests {
    /// A LoRA and an embedding on a single-file checkpoint: the same picture as on the folder it came from.
    func testAdaptersApplyToSingleFileCheckpoints() throws {
        let out = try temporaryFolder(self)
        let lora = try FixturePaths.url("lora/sd1_kohya.safetensors").path
        let single = try FixturePaths.url("single_file/checkpoints/tiny-sd1.safetensors").path
        func run(_ model: [String], _ name: String) throws -> [UInt8] {
            let file = out.appendingPathComponent(name).path
            let r = try SDProcess.run(["txt2img"] + model + ["--prompt", "a red cube", "--lora", "\(lora):0.8", "--steps", "2",
                                                            "--height", "32", "--width", "32", "--seed", "9", "--output", file])
            XCTAssertEqual(r.status, 0, r.stderr)
            return try Image.load(path: file).pixels
        }
        let folder = try run(["--model", TinyModels.sd1.path], "folder.png")
        let file = try run(["--model", single, "--config", TinyModels.sd1.path], "file.png")
        XCTAssertEqual(folder, file)
    }
}
