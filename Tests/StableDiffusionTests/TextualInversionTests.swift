import Foundation
import XCTest
import StableDiffusion

/// Textual-inversion embeddings against diffusers' `load_textual_inversion` (A1111 .pt and .safetensors,
/// diffusers learned_embeds .safetensors and .bin, single and multi-vector).
final class TextualInversionTests: XCTestCase {
    func testEmbeddingsMatchDiffusers() throws { try AdapterFixtures.Case("embeddings").check() }

    func testTokensAndExpansion() throws {
        let c = try AdapterFixtures.Case("embeddings")
        let components = try StableDiffusionComponents(directory: TinyModels.sd1, includeVAEEncoder: false, adapters: try c.adapters)
        let t = components.tokenizer
        // 1214 tokens, then emb-pt, emb-pt_1, <st>, <st>_1, <st>_2, <cat-toy>, <multi>, <multi>_1.
        XCTAssertEqual(t.tokenID(for: "emb-pt"), 1214)
        XCTAssertEqual(t.tokenID(for: "<multi>_1"), 1221)
        XCTAssertEqual(components.textEncoder.config.vocabSize, 1222)
        // A multi-vector token stands for all its vectors; matching ignores case, as the tokenizer's.
        XCTAssertEqual(t.tokenize("x <Multi>, <cat-toy> <multi>_1"), t.tokenize("x") + [1220, 1221] + t.tokenize(",") + [1219, 1221])
    }

    func testErrorsNameTheFileAndToken() throws {
        let dir = try temporaryFolder(self)
        func load(_ e: TextualInversion) -> String {
            do {
                _ = try StableDiffusionComponents(directory: TinyModels.sd1, includeVAEEncoder: false, adapters: ModelAdapters(embeddings: [e]))
                XCTFail("loaded \(e.file.path)")
                return ""
            } catch { return "\(error)" }
        }
        // A token the tokenizer already has.
        let clash = try AdapterFixtures.file("learned_embeds.safetensors")
        var m = load(TextualInversion(file: clash, token: "a"))
        XCTAssertTrue(m.contains(clash.path) && m.contains("\"a\""), m)
        // Vectors of another width (an SD 2.x embedding on SD 1.x).
        let wide = dir.appendingPathComponent("wide.safetensors")
        try SafeTensorsWriter.write([("<w>", Tensor(zeros: [1, 48]), .float32)], to: wide.path)
        m = load(TextualInversion(file: wide))
        XCTAssertTrue(m.contains(wide.path) && m.contains("48"), m)
        // Several tensors: not an embedding file.
        let many = dir.appendingPathComponent("many.safetensors")
        try SafeTensorsWriter.write([("a", Tensor(zeros: [32]), .float32), ("b", Tensor(zeros: [32]), .float32)], to: many.path)
        m = load(TextualInversion(file: many))
        XCTAssertTrue(m.contains(many.path) && m.contains("a, b"), m)
        let missing = dir.appendingPathComponent("missing.pt")
        m = load(TextualInversion(file: missing))
        XCTAssertTrue(m.contains(missing.path), m)
        // The same token twice.
        let twice = ModelAdapters(embeddings: [TextualInversion(file: clash), TextualInversion(file: clash)])
        XCTAssertThrowsError(try StableDiffusionComponents(directory: TinyModels.sd1, includeVAEEncoder: false, adapters: twice)) {
            XCTAssertTrue("\($0)".contains("<cat-toy>"), "\($0)")
        }
    }

    /// An embedding whose pickle names a code-execution global is refused, naming the file and the global.
    func testEmbeddingsCarryingCodeExecutionPayloadsAreRefused() throws {
        for global in ["os.system", "posix.system", "builtins.eval", "builtins.exec", "subprocess.Popen", "__builtin__.getattr"] {
            let file = try FixturePaths.url("pickle/payload_\(global.replacingOccurrences(of: ".", with: "_")).pt")
            XCTAssertThrowsError(try TextualInversion(file: file).load(), global) { error in
                let m = "\(error)"
                XCTAssertTrue(m.contains(file.path) && m.contains("refused global '\(global)'") && m.contains("nothing was executed"), m)
            }
        }
    }

    /// Early embeddings keep their vectors in a torch ParameterDict (`string_to_param._parameters`).
    func testParameterDictEmbeddingLoads() throws {
        let loaded = try TextualInversion(file: FixturePaths.url("pickle/parameterdict_embedding.pt")).load()
        XCTAssertEqual(loaded.token, "parameterdict_embedding")
        XCTAssertEqual(loaded.vectors.shape, [1, 32])
        XCTAssertEqual(loaded.vectors.scalars[3], 0.03, accuracy: 1e-7)
    }

    func testCLIArgumentForm() throws {
        let f = try AdapterFixtures.file("a1111.safetensors")
        XCTAssertEqual(TextualInversion(argument: f.path + ":<st>"), TextualInversion(file: f, token: "<st>"))
        XCTAssertEqual(TextualInversion(argument: f.path), TextualInversion(file: f))
    }
}
