import Foundation
import XCTest
import StableDiffusion

/// Parity of CLIPTextModel with transformers 5.24 (fixtures from Scripts/reference/gen_text_encoder_fixtures.py),
/// strict loading, config validation, and the real SD 1.5 / SD 2.1 weight layouts.
final class CLIPTextModelTests: XCTestCase {
    private struct Tiny {
        let config: CLIPTextConfig
        let weights: CLIPFixtureFile
        let expected: CLIPFixtureFile
        let model: CLIPTextModel

        init(_ name: String) throws {
            config = try CLIPTextConfig.load(from: CLIPFixtureFile.url("text_encoder/\(name)"))
            weights = try CLIPFixtureFile("text_encoder/\(name)/model.safetensors")
            expected = try CLIPFixtureFile("text_encoder/\(name)/expected.safetensors")
            model = try CLIPTextModel(config: config, weights: weights.dictionary)
        }
    }

    private func checkParity(_ name: String, clipSkips: [Int], file: StaticString = #filePath, line: UInt = #line) throws {
        let tiny = try Tiny(name)
        let ids = try tiny.expected.idRows("input_ids")
        XCTAssertEqual(ids.count, 2)
        XCTAssertEqual(ids.first?.count, 77)
        let out = try tiny.model(inputIds: ids)
        assertCLIPClose(out.lastHiddenState, try tiny.expected["last_hidden_state"], "\(name) last_hidden_state", file: file, line: line)
        assertCLIPClose(out.pooledOutput, try tiny.expected["pooler_output"], "\(name) pooler_output", file: file, line: line)
        XCTAssertEqual(out.hiddenStates.count, tiny.config.numHiddenLayers + 1, file: file, line: line)
        for (i, state) in out.hiddenStates.enumerated() {
            assertCLIPClose(state, try tiny.expected["hidden_states.\(i)"], "\(name) hidden_states.\(i)", file: file, line: line)
        }
        // clip skip both ways: from a full output, and running only the layers needed.
        XCTAssertEqual(try tiny.model.promptEmbeddings(from: out, clipSkip: nil).scalars, out.lastHiddenState.scalars)
        XCTAssertEqual(try tiny.model.promptEmbeddings(inputIds: ids).scalars, out.lastHiddenState.scalars)
        for skip in clipSkips {
            let reference = try tiny.expected["clip_skip.\(skip)"]
            assertCLIPClose(try tiny.model.promptEmbeddings(from: out, clipSkip: skip), reference, "\(name) clip_skip \(skip)", file: file, line: line)
            assertCLIPClose(try tiny.model.promptEmbeddings(inputIds: ids, clipSkip: skip), reference, "\(name) clip_skip \(skip) (early stop)", file: file, line: line)
        }
        // Int32 ids (what a tokenizer may hand over) give the same result.
        let ids32 = ids.map { $0.map { Int32($0) } }
        XCTAssertEqual(try tiny.model(inputIds: ids32).lastHiddenState.scalars, out.lastHiddenState.scalars, file: file, line: line)
        // Sequences shorter than max_position_embeddings, unpadded.
        let short = try tiny.model(inputIds: tiny.expected.idRows("short.input_ids"))
        assertCLIPClose(short.lastHiddenState, try tiny.expected["short.last_hidden_state"], "\(name) short", file: file, line: line)
        assertCLIPClose(short.pooledOutput, try tiny.expected["short.pooler_output"], "\(name) short pooled", file: file, line: line)
    }

    func testQuickGeluParityWithTransformers() throws {
        try checkParity("tiny-quick-gelu", clipSkips: [1, 2, 3])
    }

    func testGeluParityWithTransformers() throws {
        try checkParity("tiny-gelu", clipSkips: [1, 2])
    }

    func testConfigFields() throws {
        let sd1 = try Tiny("tiny-quick-gelu").config
        XCTAssertEqual(sd1.hiddenAct, .quickGelu)
        XCTAssertEqual(sd1.hiddenSize, 32)
        XCTAssertEqual(sd1.numHiddenLayers, 3)
        let sd2 = try CLIPTextConfig.load(from: CLIPFixtureFile.url("text_encoder/stabilityai-stable-diffusion-2-1/config.json"))
        XCTAssertEqual(sd2, CLIPTextConfig(vocabSize: 49408, hiddenSize: 1024, intermediateSize: 4096, numHiddenLayers: 23,
                                           numAttentionHeads: 16, maxPositionEmbeddings: 77, hiddenAct: .gelu, layerNormEps: 1e-5,
                                           bosTokenId: 0, eosTokenId: 2, padTokenId: 1, projectionDim: 512))
        XCTAssertFalse(sd2.declaresProjection, "SD 2.1's text encoder is a plain CLIPTextModel")
        // Round trip through its own encoding.
        let again = try CLIPTextConfig(jsonData: JSONEncoder().encode(sd2))
        XCTAssertEqual(again, sd2)
    }

    /// Weights saved by transformers 5 carry no `text_model.` prefix; they load too, with the same result.
    func testUnprefixedNamesLoad() throws {
        let tiny = try Tiny("tiny-gelu")
        var renamed: [String: Tensor] = [:]
        for (name, tensor) in tiny.weights.dictionary.tensors where !name.hasSuffix("position_ids") {
            renamed[String(name.dropFirst("text_model.".count))] = tensor
        }
        XCTAssertEqual(renamed.count, CLIPTextModel.parameterShapes(config: tiny.config).count)
        let model = try CLIPTextModel(config: tiny.config, weights: TensorDictionary(renamed))
        let ids = try tiny.expected.idRows("input_ids")
        XCTAssertEqual(try model(inputIds: ids).lastHiddenState.scalars, try tiny.model(inputIds: ids).lastHiddenState.scalars)
    }

    func testStrictLoadingListsProblems() throws {
        let tiny = try Tiny("tiny-quick-gelu")
        var tensors = tiny.weights.dictionary.tensors
        XCTAssertNotNil(tensors["text_model.embeddings.position_ids"])  // accepted and ignored
        tensors["text_model.encoder.layers.1.mlp.fc1.bias"] = nil
        tensors["text_model.final_layer_norm.weight"] = nil
        tensors["text_model.encoder.layers.0.self_attn.q_proj.weight"] = Tensor(zeros: [32, 31])
        tensors["text_model.text_projection.weight"] = Tensor(zeros: [32, 32])
        XCTAssertThrowsError(try CLIPTextModel(config: tiny.config, weights: TensorDictionary(tensors, description: "w.safetensors"))) { error in
            let message = String(describing: error)
            XCTAssertTrue(message.contains("w.safetensors"), message)
            XCTAssertTrue(message.contains("2 missing tensor(s)"), message)
            XCTAssertTrue(message.contains("text_model.encoder.layers.1.mlp.fc1.bias"), message)
            XCTAssertTrue(message.contains("text_model.final_layer_norm.weight"), message)
            XCTAssertTrue(message.contains("text_model.encoder.layers.0.self_attn.q_proj.weight is [32, 31], expected [32, 32]"), message)
            XCTAssertTrue(message.contains("unexpected tensor(s): text_model.text_projection.weight"), message)
        }
        // A config that disagrees with the weights (one layer more) names the missing layer.
        var deeper = tiny.config
        deeper.numHiddenLayers = 4
        XCTAssertThrowsError(try CLIPTextModel(config: deeper, weights: tiny.weights.dictionary)) { error in
            XCTAssertTrue(String(describing: error).contains("text_model.encoder.layers.3.self_attn.k_proj.weight"), "\(error)")
        }
    }

    func testConfigErrorsNameFileAndKey() throws {
        func message(_ json: String) -> String {
            do {
                _ = try CLIPTextConfig(jsonData: Data(json.utf8), file: "te/config.json")
                return "no error"
            } catch {
                return String(describing: error)
            }
        }
        let relu = message(#"{"hidden_act": "relu", "hidden_size": 64, "num_attention_heads": 4}"#)
        XCTAssertTrue(relu.contains("te/config.json") && relu.contains("hidden_act") && relu.contains("relu"), relu)
        let tanh = message(#"{"hidden_act": "gelu_new"}"#)
        XCTAssertTrue(tanh.contains("hidden_act"), tanh)
        let arch = message(#"{"architectures": ["CLIPVisionModel"]}"#)
        XCTAssertTrue(arch.contains("te/config.json") && arch.contains("architectures") && arch.contains("CLIPVisionModel"), arch)
        XCTAssertEqual(message(#"{"architectures": ["CLIPTextModelWithProjection"], "projection_dim": 8}"#), "no error", "SDXL's text_encoder_2")
        let projection = message(#"{"projection_dim": 0}"#)
        XCTAssertTrue(projection.contains("projection_dim"), projection)
        let type = message(#"{"model_type": "t5"}"#)
        XCTAssertTrue(type.contains("model_type"), type)
        let heads = message(#"{"hidden_size": 100, "num_attention_heads": 8}"#)
        XCTAssertTrue(heads.contains("num_attention_heads"), heads)
        let wrongType = message(#"{"hidden_size": "big"}"#)
        XCTAssertTrue(wrongType.contains("te/config.json") && wrongType.contains("hidden_size"), wrongType)
        let layers = message(#"{"num_hidden_layers": 0}"#)
        XCTAssertTrue(layers.contains("num_hidden_layers"), layers)
        XCTAssertTrue(message("{").contains("te/config.json"))
        XCTAssertThrowsError(try CLIPTextConfig.load(from: URL(fileURLWithPath: "/nonexistent/text_encoder"))) { error in
            XCTAssertTrue(String(describing: error).contains("/nonexistent/text_encoder"), "\(error)")
        }
        // Absent keys take transformers' defaults.
        XCTAssertEqual(try CLIPTextConfig(jsonData: Data("{}".utf8)), CLIPTextConfig(architectures: nil, modelType: nil))
    }

    func testBadInputsThrow() throws {
        let tiny = try Tiny("tiny-quick-gelu")
        let good = try tiny.expected.idRows("input_ids")
        var outOfRange = good
        outOfRange[1][5] = 1000
        XCTAssertThrowsError(try tiny.model(inputIds: outOfRange)) { error in
            XCTAssertTrue(String(describing: error).contains("token id 1000 at [1][5]"), "\(error)")
        }
        var negative = good
        negative[0][0] = -1
        XCTAssertThrowsError(try tiny.model(inputIds: negative))
        XCTAssertThrowsError(try tiny.model(inputIds: [good[0] + [3]]))          // 78 tokens
        XCTAssertThrowsError(try tiny.model(inputIds: [good[0], Array(good[1].prefix(10))]))
        XCTAssertThrowsError(try tiny.model(inputIds: [[Int]]()))
        XCTAssertThrowsError(try tiny.model(inputIds: [[Int]()]))
        XCTAssertThrowsError(try tiny.model.promptEmbeddings(inputIds: good, clipSkip: 4))
        XCTAssertThrowsError(try tiny.model.promptEmbeddings(inputIds: good, clipSkip: -1))
    }

    // MARK: Real architectures

    /// Serves zeros of the manifest's shapes on demand and records what was asked for.
    private final class ZeroSource: TensorSource, @unchecked Sendable {
        let shapes: [String: [Int]]
        private let lock = NSLock()
        private var requested: [String] = []

        init(_ shapes: [String: [Int]]) { self.shapes = shapes }
        var tensorNames: [String] { shapes.keys.sorted() }
        var sourceDescription: String { "zero manifest source" }
        func shape(of name: String) -> [Int]? { shapes[name] }
        func tensor(_ name: String) throws -> Tensor {
            guard let shape = shapes[name] else { throw TensorError.invalidArgument("no tensor \(name)") }
            lock.withLock { requested.append(name) }
            return Tensor(zeros: shape)
        }
        var requestedNames: [String] { lock.withLock { requested } }
    }

    private func checkRealArchitecture(_ repo: String, layers: Int, hidden: Int, act: CLIPHiddenActivation,
                                       file: StaticString = #filePath, line: UInt = #line) throws {
        let config = try CLIPTextConfig.load(from: CLIPFixtureFile.url("text_encoder/\(repo)/config.json"))
        XCTAssertEqual(config.numHiddenLayers, layers, file: file, line: line)
        XCTAssertEqual(config.hiddenSize, hidden, file: file, line: line)
        XCTAssertEqual(config.hiddenAct, act, file: file, line: line)
        let data = try Data(contentsOf: CLIPFixtureFile.url("text_encoder/\(repo)/manifest.json"))
        guard let entries = try JSONSerialization.jsonObject(with: data) as? [[Any]] else {
            return XCTFail("malformed manifest for \(repo)", file: file, line: line)
        }
        let manifest: [(name: String, shape: [Int])] = entries.compactMap { entry in
            guard entry.count == 2, let name = entry[0] as? String, let shape = entry[1] as? [Int] else { return nil }
            return (name, shape)
        }
        XCTAssertEqual(manifest.count, entries.count, file: file, line: line)
        // The model's own list matches transformers' state_dict, in order.
        let own = CLIPTextModel.parameterShapes(config: config)
        XCTAssertEqual(own.map(\.name), manifest.map(\.name), file: file, line: line)
        XCTAssertEqual(own.map(\.shape), manifest.map(\.shape), file: file, line: line)

        // A full-size state dict as SD checkpoints name it (text_model. prefix, legacy position_ids buffer)
        // loads strictly, and every parameter is read exactly once.
        var shapes = Dictionary(uniqueKeysWithValues: manifest.map { ("text_model." + $0.name, $0.shape) })
        shapes["text_model.embeddings.position_ids"] = [1, config.maxPositionEmbeddings]
        let source = ZeroSource(shapes)
        let start = Date()
        let model = try CLIPTextModel(config: config, weights: source)
        XCTAssertEqual(source.requestedNames.sorted(), manifest.map { "text_model." + $0.name }.sorted(), file: file, line: line)
        XCTAssertEqual(model.config, config, file: file, line: line)
        print("\(repo): loaded \(manifest.count) zero tensors in \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
    }

    func testStableDiffusion15TextEncoderLoadsFullSizeStateDict() throws {
        try checkRealArchitecture("runwayml-stable-diffusion-v1-5", layers: 12, hidden: 768, act: .quickGelu)
    }

    func testStableDiffusion21TextEncoderLoadsFullSizeStateDict() throws {
        try checkRealArchitecture("stabilityai-stable-diffusion-2-1", layers: 23, hidden: 1024, act: .gelu)
    }
}
