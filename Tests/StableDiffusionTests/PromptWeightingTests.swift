import Foundation
import XCTest
import StableDiffusion

/// AUTOMATIC1111 prompt syntax against the diffusers community pipeline lpw_stable_diffusion
/// (`get_weighted_text_embeddings`, plus A1111's BREAK), long prompts, and clip skip.
final class PromptWeightingTests: XCTestCase {
    static let components = Result { [
        "tiny-sd1": try StableDiffusionComponents(directory: TinyModels.sd1, includeVAEEncoder: false),
        "tiny-sd2": try StableDiffusionComponents(directory: TinyModels.sd2, includeVAEEncoder: false),
    ] }

    func testParserFollowsA1111() {
        typealias P = PromptAttentionParser.Piece
        func parse(_ s: String) -> [P] { PromptAttentionParser.parse(s) }
        XCTAssertEqual(parse("normal text"), [.text("normal text", 1)])
        XCTAssertEqual(parse("an (important) word"), [.text("an ", 1), .text("important", 1.1), .text(" word", 1)])
        XCTAssertEqual(parse("(unbalanced"), [.text("unbalanced", 1.1)])
        XCTAssertEqual(parse("\\(literal\\]"), [.text("(literal]", 1)])
        XCTAssertEqual(parse("(unnecessary)(parens)"), [.text("unnecessaryparens", 1.1)])
        let sky = parse("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).")
        let expected: [(String, Double)] = [("a ", 1), ("house", 1.3 * 1.1 * 1.1), (" ", 1.1), ("on", 1), (" a ", 1.1), ("hill", 0.55),
                                            (", sun, ", 1.1), ("sky", 1.1 * 1.1 * 1.1 * 1.1), (".", 1.1)]
        XCTAssertEqual(sky.count, expected.count)
        for (piece, (text, weight)) in zip(sky, expected) {
            guard case .text(let t, let w) = piece else { return XCTFail("\(piece)") }
            XCTAssertEqual(t, text)
            XCTAssertEqual(w, weight, accuracy: 1e-12)
        }
        XCTAssertEqual(parse(""), [.text("", 1)])
        XCTAssertEqual(parse("a BREAK b"), [.text("a", 1), .chunkBreak, .text("b", 1)])
        XCTAssertEqual(parse("(x BREAK y)"), [.text("x", 1.1), .chunkBreak, .text("y", 1.1)])
        XCTAssertEqual(parse("BREAKING news"), [.text("BREAKING news", 1)])
        // A malformed number is plain text (lpw raises on it).
        XCTAssertEqual(parse("(d:1.2.3)"), [.text("d:1.2.3", 1.1)])
    }

    /// >= 30 awkward prompts against lpw, stage by stage: padded token ids (exact), per-position weights,
    /// embeddings before weighting (1e-5), and the weighted, mean-restored result: 1e-5, widened by the
    /// condition number of lpw's mean ratio (mean |x| / |mean x|), which on these tiny random models is
    /// in the hundreds to thousands because their embeddings average almost exactly zero.
    func testWeightedEmbeddingsMatchLPW() throws {
        let data = try Data(contentsOf: try AdapterFixtures.file("weighted_prompts.json"))
        let cases = try JSONValue.parse(data, file: "weighted_prompts.json").arrayValue ?? []
        XCTAssertGreaterThanOrEqual(cases.count, 30)
        let expected = try SafeTensorsFile(path: try AdapterFixtures.file("weighted_embeddings.safetensors").path)
        let all = try Self.components.get()
        for entry in cases {
            let c = entry.objectValue ?? [:]
            let name = c["name"]?.stringValue ?? ""
            guard let components = all[c["model"]?.stringValue ?? ""] else { return XCTFail("model of \(name)") }
            let prompts = c["prompts"]?.arrayValue?.compactMap(\.stringValue) ?? []
            let negatives = c["negative_prompts"]?.arrayValue?.compactMap(\.stringValue) ?? []
            let clipSkip = c["clip_skip"]?.intValue
            let encoder = WeightedPromptEncoder(tokenizer: components.tokenizer, textEncoder: components.textEncoder)
            let pos = prompts.map(encoder.tokensAndWeights), neg = negatives.map(encoder.tokensAndWeights)
            let chunks = encoder.chunkCount((pos + neg).map(\.ids.count).max() ?? 0)
            for (label, parsed) in [("", pos), ("negative_", neg)] {
                // lpw's layout: bos, tokens, pad..., eos over 75 * chunks + 2 positions.
                let ids = parsed.map { p in [components.tokenizer.bosTokenID] + (0..<(chunks * encoder.chunkLength)).map { $0 < p.ids.count ? p.ids[$0] : components.tokenizer.padTokenID } + [components.tokenizer.eosTokenID] }
                XCTAssertEqual(ids.flatMap { $0 }.map(Float.init), try expected.tensor("\(name).\(label)ids").scalars, "\(name) \(label)ids")
                let weights = parsed.flatMap { encoder.positionWeights($0.weights, chunks: chunks) }
                let refWeights = try expected.tensor("\(name).\(label)weights").scalars
                XCTAssertEqual(weights.count, refWeights.count, "\(name) \(label)weights")
                XCTAssertLessThanOrEqual(zip(weights, refWeights).map { abs($0 - $1) }.max() ?? 0, 1e-6, "\(name) \(label)weights")
                let unweighted = try encoder.unweighted(parsed, chunks: chunks, clipSkip: clipSkip)
                assertClose(unweighted, try expected.tensor("\(name).unweighted_\(label)prompt_embeds"), tolerance: 1e-5, "\(name) unweighted \(label)")
            }
            var o = GenerationOptions(prompts: prompts, negativePrompts: negatives)
            o.promptSyntax = .a1111
            o.clipSkip = clipSkip
            let actual = try components.encodePrompt(o)
            let reference = try Tensor.concatenate([expected.tensor("\(name).negative_prompt_embeds"), expected.tensor("\(name).prompt_embeds")], axis: 0)
            XCTAssertEqual(actual.shape, reference.shape, name)
            guard actual.shape == reference.shape else { continue }
            let rows = reference.shape[0], n = reference.count / rows
            let r = reference.scalars, a = actual.scalars
            for b in 0..<rows {
                let slice = r[(b * n)..<((b + 1) * n)]
                let mean = abs(slice.reduce(0.0) { $0 + Double($1) } / Double(n))
                let meanAbs = slice.reduce(0.0) { $0 + Double(abs($1)) } / Double(n)
                let maxAbs = Double(slice.map(abs).max() ?? 0)
                let tolerance = 1e-5 + 2e-7 * meanAbs / max(mean, 1e-12) * maxAbs
                let diff = Double(zip(a[(b * n)..<((b + 1) * n)], slice).map { abs($0 - $1) }.max() ?? 0)
                XCTAssertLessThanOrEqual(diff, tolerance, "\(name) row \(b)")
            }
        }
    }

    /// A prompt of several 75-token chunks: the UNet attends to all of them, as diffusers does with lpw's embeddings.
    func testLongWeightedPromptPictureMatchesDiffusers() throws { try AdapterFixtures.Case("a1111_long").check() }

    func testClipSkipMatchesDiffusers() throws { try AdapterFixtures.Case("clip_skip").check() }

    func testPlainSyntaxWarnsAboutCutPrompts() throws {
        let components = try XCTUnwrap(try Self.components.get()["tiny-sd1"])
        var o = GenerationOptions(prompt: String(repeating: "a ", count: 75) + "tail end")
        let warnings = components.truncationWarnings(o)
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings[0].contains("tail end"), warnings[0])
        XCTAssertTrue(warnings[0].contains("--prompt-syntax a1111"), warnings[0])
        o.promptSyntax = .a1111
        XCTAssertEqual(components.truncationWarnings(o), [])
        XCTAssertEqual(components.truncationWarnings(GenerationOptions(prompt: "short")), [])
    }

    /// Plain syntax is untouched: brackets are text and the embeddings are diffusers' (77 tokens).
    func testPlainSyntaxKeepsDiffusersEmbeddings() throws {
        let c = try PipelineCase("sd1_txt2img")
        let components = try XCTUnwrap(try Self.components.get()["tiny-sd1"])
        let expected = try Tensor.concatenate([c.tensors.tensor("negative_prompt_embeds"), c.tensors.tensor("prompt_embeds")], axis: 0)
        // The fixture has two images per prompt; one per prompt here.
        var o = c.options
        o.numImagesPerPrompt = 1
        assertClose(try components.encodePrompt(o), try Tensor.concatenate([expected.slice(axis: 0, 0..<1), expected.slice(axis: 0, 2..<3)], axis: 0),
                    tolerance: 1e-4)
    }
}
