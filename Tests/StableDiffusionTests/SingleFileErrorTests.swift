import Foundation
import XCTest
import DiffusionTensor
import StableDiffusion

/// Broken or wrong files are thrown errors that name the file and what was expected.
final class SingleFileErrorTests: XCTestCase {
    func assertLoadFails(_ url: URL, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try StableDiffusionComponents(singleFile: url, configDirectory: TinyModels.sd1), file: file, line: line) { error in
            let message = "\(error)"
            for f in [url.path] + fragments { XCTAssertTrue(message.contains(f), "\(message) lacks \(f)", file: file, line: line) }
        }
    }

    func testTruncatedFilesAreRefused() throws {
        let dir = try temporaryFolder(self)
        for name in ["tiny-sd1.safetensors", "tiny-sd1.ckpt"] {
            let data = try Data(contentsOf: SingleFileFixtures.checkpoint(name))
            let cut = dir.appendingPathComponent(name)
            try data.prefix(data.count / 2).write(to: cut)
            assertLoadFails(cut, [])
        }
        let tiny = dir.appendingPathComponent("tiny.safetensors")
        try Data([1, 2, 3]).write(to: tiny)
        assertLoadFails(tiny, ["neither a safetensors file nor a torch checkpoint"])
    }

    /// A checkpoint whose pickle names a code-execution global is refused, naming the file and the global.
    func testCodeExecutionPayloadIsRefused() throws {
        assertLoadFails(try FixturePaths.url("pickle/payload.ckpt"), ["refused global 'posix.system'", "nothing was executed"])
    }

    /// The original sd-v1-4.ckpt layout (Lightning ModelCheckpoint key, numpy scalars) still opens.
    func testLightningTrainingCheckpointOpens() throws {
        let file = try SingleFileCheckpoint(url: FixturePaths.url("pickle/sd-v1-4-layout.ckpt"))
        XCTAssertEqual(file.globalStep, 470000)
        XCTAssertEqual(file.source.tensorNames.count, 6)
        XCTAssertEqual(try file.source.tensor("first_stage_model.decoder.conv_out.bias").scalars, [0.1, 0.2, 0.3])
    }

    func testMislabeledFilesAreRefused() throws {
        let dir = try temporaryFolder(self)
        let zip = dir.appendingPathComponent("model.safetensors")
        try FileManager.default.copyItem(at: SingleFileFixtures.checkpoint("tiny-sd1.ckpt"), to: zip)
        assertLoadFails(zip, ["zip", "expected a safetensors file"])
        let st = dir.appendingPathComponent("model.ckpt")
        try FileManager.default.copyItem(at: SingleFileFixtures.checkpoint("tiny-sd1.safetensors"), to: st)
        assertLoadFails(st, ["holds a safetensors file", "expected a torch.save zip archive"])
    }

    /// A VAE-only file (original names or diffusers names) is not a model.
    func testVAEOnlyFileIsRefused() throws {
        let dir = try temporaryFolder(self)
        let source = try SafeTensorsFile(path: SingleFileFixtures.checkpoint("tiny-sd1.safetensors").path)
        let vaeNames = source.tensorNames.filter { $0.hasPrefix("first_stage_model.") }
        let vae = dir.appendingPathComponent("vae.safetensors")
        try SafeTensorsWriter.write(try vaeNames.map { ($0, try source.tensor($0), DType.float16) }, to: vae.path)
        assertLoadFails(vae, ["only a VAE", "expected a Stable Diffusion single-file checkpoint"])
        let diffusersVAE = dir.appendingPathComponent("vae2.safetensors")
        try SafeTensorsWriter.write(try vaeNames.map { (String($0.dropFirst("first_stage_model.".count)), try source.tensor($0), DType.float16) },
                                    to: diffusersVAE.path)
        assertLoadFails(diffusersVAE, ["standalone VAE"])
    }

    /// Without a config folder the tiny models' 32-wide cross attention is no known family.
    func testUnknownArchitectureWithoutConfigIsRefused() throws {
        let url = try SingleFileFixtures.checkpoint("tiny-sd1.safetensors")
        XCTAssertThrowsError(try StableDiffusionComponents(singleFile: url)) { error in
            XCTAssertTrue("\(error)".contains(url.path) && "\(error)".contains("unknown architecture"), "\(error)")
        }
    }

    func testModelLocationClassifies() throws {
        let dir = try temporaryFolder(self)
        XCTAssertEqual(try ModelLocation.classify(TinyModels.sd1.path), .folder(URL(fileURLWithPath: TinyModels.sd1.path, isDirectory: true)))
        let file = try SingleFileFixtures.checkpoint("tiny-sd1.ckpt")
        XCTAssertEqual(try ModelLocation.classify(file.path), .singleFile(file))
        let txt = dir.appendingPathComponent("notes.txt")
        try Data("x".utf8).write(to: txt)
        XCTAssertThrowsError(try ModelLocation.classify(txt.path)) { XCTAssertTrue("\($0)".contains("notes.txt")) }
        XCTAssertThrowsError(try ModelLocation.classify(dir.appendingPathComponent("missing").path)) { XCTAssertTrue("\($0)".contains("does not exist")) }
    }
}
