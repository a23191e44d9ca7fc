import Foundation
import StableDiffusion
import XCTest

/// Parity of `CLIPTokenizer` with transformers 5.24's on the real 49,408-token CLIP vocabulary.
/// Expectations come from Scripts/reference/gen_tokenizer_fixtures.py (Fixtures/tokenizer/expected.json).
final class TokenizerTests: XCTestCase {
    struct Row: Decodable {
        let ids: [Int]
        let input_ids: [Int]
        let attention_mask: [Int]
    }

    struct Expected: Decodable {
        let prompts: [String]
        let configs: [String: [Row]]
    }

    static func fixtures() throws -> URL {
        guard let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            throw XCTSkip("Fixtures resource missing from the test bundle")
        }
        return url.appendingPathComponent("tokenizer")
    }

    static func expected() throws -> Expected {
        let data = try Data(contentsOf: fixtures().appendingPathComponent("expected.json"))
        return try JSONDecoder().decode(Expected.self, from: data)
    }

    /// The shared clip-bpe/ vocabulary with one flavour's config files.
    static func files(flavour: String) throws -> TokenizerFiles {
        let root = try fixtures()
        let map = root.appendingPathComponent("\(flavour)/special_tokens_map.json")
        return TokenizerFiles(
            vocab: root.appendingPathComponent("clip-bpe/vocab.json"),
            merges: root.appendingPathComponent("clip-bpe/merges.txt"),
            tokenizerConfig: root.appendingPathComponent("\(flavour)/tokenizer_config.json"),
            specialTokensMap: FileManager.default.fileExists(atPath: map.path) ? map : nil)
    }

    /// A scratch folder, removed when the test ends.
    func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("sd-tokenizer-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    /// A diffusers-style tokenizer/ folder for one flavour (vocab.json, merges.txt and its configs).
    func assembledFolder(flavour: String) throws -> URL {
        let root = try Self.fixtures()
        let dir = try temporaryDirectory()
        for (sub, name) in [
            ("clip-bpe", "vocab.json"), ("clip-bpe", "merges.txt"),
            (flavour, "tokenizer_config.json"), (flavour, "special_tokens_map.json"),
        ] where FileManager.default.fileExists(atPath: root.appendingPathComponent("\(sub)/\(name)").path) {
            try FileManager.default.copyItem(
                at: root.appendingPathComponent("\(sub)/\(name)"), to: dir.appendingPathComponent(name))
        }
        return dir
    }

    func assertMatchesTransformers(
        _ tokenizer: CLIPTokenizer, config: String, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let expected = try Self.expected()
        let rows = try XCTUnwrap(expected.configs[config], file: file, line: line)
        XCTAssertEqual(rows.count, expected.prompts.count, file: file, line: line)
        XCTAssertGreaterThanOrEqual(expected.prompts.count, 30, file: file, line: line)
        for (prompt, row) in zip(expected.prompts, rows) {
            let padded = tokenizer.encode(prompt)
            XCTAssertEqual(padded.inputIDs, row.input_ids, "\(config) input_ids of \(prompt.debugDescription)", file: file, line: line)
            XCTAssertEqual(padded.attentionMask, row.attention_mask, "\(config) mask of \(prompt.debugDescription)", file: file, line: line)
            XCTAssertEqual(padded.length, row.attention_mask.reduce(0, +), file: file, line: line)
            XCTAssertEqual(padded.untruncatedLength, row.ids.count, file: file, line: line)
            XCTAssertEqual(padded.wasTruncated, row.ids.count > 77, file: file, line: line)
            let full = tokenizer.encode(prompt, padding: false, truncation: false)
            XCTAssertEqual(full.inputIDs, row.ids, "\(config) untruncated ids of \(prompt.debugDescription)", file: file, line: line)
            XCTAssertEqual(full.unpaddedIDs, row.ids, file: file, line: line)
            XCTAssertEqual(tokenizer.tokenize(prompt), Array(row.ids.dropFirst().dropLast()), file: file, line: line)
        }
    }

    // MARK: - Parity

    func testSD1VocabAndMergesMatchTransformers() throws {
        let tokenizer = try CLIPTokenizer(files: Self.files(flavour: "sd1"))
        XCTAssertEqual(tokenizer.vocabularySize, 49408)
        XCTAssertEqual(tokenizer.modelMaxLength, 77)
        XCTAssertEqual(tokenizer.bosTokenID, 49406)
        XCTAssertEqual(tokenizer.eosTokenID, 49407)
        XCTAssertEqual(tokenizer.padTokenID, 49407)
        XCTAssertEqual(tokenizer.padToken, "<|endoftext|>")
        try assertMatchesTransformers(tokenizer, config: "sd1")
    }

    func testSD2VocabAndMergesMatchTransformers() throws {
        let tokenizer = try CLIPTokenizer(files: Self.files(flavour: "sd2"))
        XCTAssertEqual(tokenizer.padToken, "!")
        XCTAssertEqual(tokenizer.padTokenID, 0)
        XCTAssertEqual(tokenizer.unkTokenID, 49407)
        try assertMatchesTransformers(tokenizer, config: "sd2")
    }

    /// A transformers 4.3x-style tokenizer_config.json alone: its added_tokens_decoder flags win.
    func testAddedTokensDecoderConfigMatchesTransformers() throws {
        let tokenizer = try CLIPTokenizer(files: Self.files(flavour: "sd1-added"))
        XCTAssertEqual(tokenizer.padTokenID, 49407)
        try assertMatchesTransformers(tokenizer, config: "sd1-added")
    }

    func testTokenizerJSONWithPairMergesMatchesTransformers() throws {
        let tokenizer = try CLIPTokenizer(directory: Self.fixtures().appendingPathComponent("sd2-json"))
        XCTAssertEqual(tokenizer.vocabularySize, 49408)
        XCTAssertEqual(tokenizer.padTokenID, 0)
        try assertMatchesTransformers(tokenizer, config: "sd2-json")
    }

    /// Older `tokenizers` wrote merges as "a b" strings; the generator checks transformers reads both alike.
    func testTokenizerJSONWithStringMergesMatchesTransformers() throws {
        let source = try Self.fixtures().appendingPathComponent("sd2-json")
        var json = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(contentsOf: source.appendingPathComponent("tokenizer.json")))
                as? [String: Any])
        var model = try XCTUnwrap(json["model"] as? [String: Any])
        let pairs = try XCTUnwrap(model["merges"] as? [[String]])
        model["merges"] = pairs.map { $0.joined(separator: " ") }
        json["model"] = model
        let dir = try temporaryDirectory()
        try JSONSerialization.data(withJSONObject: json).write(to: dir.appendingPathComponent("tokenizer.json"))
        try FileManager.default.copyItem(
            at: source.appendingPathComponent("tokenizer_config.json"),
            to: dir.appendingPathComponent("tokenizer_config.json"))
        try assertMatchesTransformers(CLIPTokenizer(directory: dir), config: "sd2-json")
    }

    func testDirectoryLayoutLoadsLikeExplicitFiles() throws {
        let expected = try Self.expected()
        for flavour in ["sd1", "sd2", "sd1-added"] {
            let fromDir = try CLIPTokenizer(directory: assembledFolder(flavour: flavour))
            let fromFiles = try CLIPTokenizer(files: Self.files(flavour: flavour))
            for prompt in expected.prompts {
                XCTAssertEqual(fromDir.encode(prompt), fromFiles.encode(prompt))
            }
        }
    }

    func testBatchEqualsSinglePrompts() throws {
        let tokenizer = try CLIPTokenizer(files: Self.files(flavour: "sd1"))
        let prompts = try Array(Self.expected().prompts.prefix(8))
        let batch = tokenizer.encode(batch: prompts)
        XCTAssertEqual(batch, prompts.map { tokenizer.encode($0) })
        XCTAssertTrue(batch.allSatisfy { $0.inputIDs.count == 77 })
        let short = tokenizer.encode(batch: ["a cat", "a dog"], maxLength: 5)
        XCTAssertEqual(short.map(\.inputIDs), [[49406, 320, 2368, 49407, 49407], [49406, 320, 1929, 49407, 49407]])
    }

    func testTokenLookup() throws {
        let tokenizer = try CLIPTokenizer(files: Self.files(flavour: "sd1"))
        XCTAssertEqual(tokenizer.tokenID(for: "photo</w>"), 1125)
        XCTAssertEqual(tokenizer.token(for: 49406), "<|startoftext|>")
        XCTAssertNil(tokenizer.token(for: 49408))
    }

    // MARK: - Errors name the file

    func assertThrows(
        _ body: @autoclosure () throws -> Any, mentioning fragment: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            XCTAssertTrue(error is TokenizerError, "\(error)", file: file, line: line)
            XCTAssertTrue("\(error)".contains(fragment), "\(error) should mention \(fragment)", file: file, line: line)
        }
    }

    func testMissingFolderAndFiles() throws {
        let dir = try temporaryDirectory()
        assertThrows(try CLIPTokenizer(directory: dir.appendingPathComponent("nope")), mentioning: "nope")
        assertThrows(try CLIPTokenizer(directory: dir), mentioning: dir.path)
        try Data("{}".utf8).write(to: dir.appendingPathComponent("vocab.json"))
        assertThrows(try CLIPTokenizer(directory: dir), mentioning: "merges.txt")
        assertThrows(
            try CLIPTokenizer(files: TokenizerFiles(
                vocab: dir.appendingPathComponent("vocab.json"), merges: dir.appendingPathComponent("absent.txt"))),
            mentioning: "absent.txt")
    }

    func testMalformedFiles() throws {
        let dir = try assembledFolder(flavour: "sd1")
        let vocab = dir.appendingPathComponent("vocab.json")
        let merges = dir.appendingPathComponent("merges.txt")
        let config = dir.appendingPathComponent("tokenizer_config.json")
        let original = try Data(contentsOf: merges)

        try Data("#version: 0.2\ni n\nthree part line\n".utf8).write(to: merges)
        assertThrows(try CLIPTokenizer(directory: dir), mentioning: "merges.txt")
        try Data("#version: 0.2\nzz\u{0100} q\n".utf8).write(to: merges)
        assertThrows(try CLIPTokenizer(directory: dir), mentioning: "merges.txt")
        try original.write(to: merges)

        try Data(#"{"pad_token": 5}"#.utf8).write(to: config)
        assertThrows(try CLIPTokenizer(directory: dir), mentioning: "tokenizer_config.json")
        try Data(#"{"model_max_length": "long"}"#.utf8).write(to: config)
        assertThrows(try CLIPTokenizer(directory: dir), mentioning: "tokenizer_config.json")
        try Data("not json".utf8).write(to: config)
        assertThrows(try CLIPTokenizer(directory: dir), mentioning: "tokenizer_config.json")

        try Data(#"["a", "b"]"#.utf8).write(to: vocab)
        assertThrows(try CLIPTokenizer(directory: dir), mentioning: "vocab.json")

        let jsonDir = try temporaryDirectory()
        try Data(#"{"model": {"type": "Unigram", "vocab": {}, "merges": []}}"#.utf8)
            .write(to: jsonDir.appendingPathComponent("tokenizer.json"))
        assertThrows(try CLIPTokenizer(directory: jsonDir), mentioning: "tokenizer.json")
        try Data(#"{"model": {"vocab": {"a": 0}}}"#.utf8).write(to: jsonDir.appendingPathComponent("tokenizer.json"))
        assertThrows(try CLIPTokenizer(directory: jsonDir), mentioning: "tokenizer.json")
    }

    func testDefaultsWithoutConfigFiles() throws {
        let root = try Self.fixtures()
        let tokenizer = try CLIPTokenizer(files: TokenizerFiles(
            vocab: root.appendingPathComponent("clip-bpe/vocab.json"),
            merges: root.appendingPathComponent("clip-bpe/merges.txt")))
        XCTAssertEqual(tokenizer.modelMaxLength, 77)
        XCTAssertEqual(tokenizer.padTokenID, 49407)
        XCTAssertEqual(tokenizer.encode("a photo of a cat").unpaddedIDs, [49406, 320, 1125, 539, 320, 2368, 49407])
    }

    // MARK: - sd tokenize

    func runSD(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try SDProcess.run(arguments)
    }

    func testCLIPrintsPaddedIDs() throws {
        let expected = try Self.expected()
        // Punctuation, SD 2.x's "!" and an over-long prompt (the last one).
        for (flavour, index) in [("sd1", 4), ("sd2", 23), ("sd1", expected.prompts.count - 1)] {
            let dir = try assembledFolder(flavour: flavour)
            let result = try runSD(["tokenize", "--tokenizer", dir.path, "--prompt", expected.prompts[index]])
            XCTAssertEqual(result.status, 0, result.stderr)
            let ids = try JSONDecoder().decode([Int].self, from: Data(result.stdout.utf8))
            XCTAssertEqual(ids, expected.configs[flavour]?[index].input_ids)
        }
    }

    func testCLIFailsWithMessage() throws {
        let result = try runSD(["tokenize", "--tokenizer", "/nonexistent/tokenizer", "--prompt", "a cat"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stdout.isEmpty)
        XCTAssertTrue(result.stderr.contains("/nonexistent/tokenizer"), result.stderr)
    }
}
