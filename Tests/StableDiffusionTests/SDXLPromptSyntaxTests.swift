import Foundation
import XCTest
import StableDiffusion
import DiffusionTensor

/// `PromptSyntax.a1111` on SDXL, as the web UI conditions its two embedders: weighted 75-token chunks per encoder
/// (bos, tokens, the tokenizer's pad, eos) from the penultimate layer, each half's mean restored after weighting,
/// the halves concatenated, the pooled embedding from the second encoder's first chunk, unweighted.
final class SDXLPromptSyntaxTests: XCTestCase {
    let components = SDXLPipelineTests.components

    func conditioning(_ prompt: String, negative: String? = nil, guidance: Float = 5) throws -> UNetConditioning {
        var o = GenerationOptions(prompt: prompt, negativePrompt: negative)
        o.promptSyntax = .a1111
        o.guidanceScale = guidance
        return try components.get().unetConditioning(o, height: 64, width: 64)
    }

    /// Row `b`, feature columns `range`, as a flat array.
    func half(_ t: Tensor, batch b: Int, features range: Range<Int>) -> [Float] {
        let (tokens, dim) = (t.shape[1], t.shape[2])
        let s = t.scalars
        return (0..<tokens).flatMap { i in range.map { s[(b * tokens + i) * dim + $0] } }
    }

    func testUnweightedChunkLayoutAndWeightedMeans() throws {
        let c = try components.get()
        let tok1 = c.tokenizer, tok2 = try XCTUnwrap(c.tokenizer2), enc2 = try XCTUnwrap(c.textEncoder2)
        let width1 = c.textEncoder.config.hiddenSize, width2 = enc2.config.hiddenSize
        // No weights: the second encoder's half is its penultimate state of [bos, tokens, pad..., eos].
        let plain = try conditioning("a red cube on a table")
        let ids = tok2.tokenize("a red cube on a table")
        let chunk = [tok2.bosTokenID] + ids + [Int](repeating: tok2.padTokenID, count: 75 - ids.count) + [tok2.eosTokenID]
        let expected2 = try enc2.penultimateHiddenState(inputIds: [chunk])
        XCTAssertEqual(plain.encoderHiddenStates.shape, [2, 77, width1 + width2])
        assertClose(try Tensor(shape: [1, 77, width2], scalars: half(plain.encoderHiddenStates, batch: 1, features: width1..<(width1 + width2))),
                    expected2, tolerance: 1e-6, "second encoder half")
        let pooled = try XCTUnwrap(try enc2(inputIds: [chunk]).textEmbeds)
        assertClose(try plain.textTime.unwrap().textEmbeds.slice(axis: 0, 1..<2), pooled, tolerance: 1e-6, "pooled from the first chunk")
        // The empty negative prompt is zeros (force_zeros_for_empty_prompt, the web UI's zero negative).
        XCTAssertTrue(half(plain.encoderHiddenStates, batch: 0, features: 0..<(width1 + width2)).allSatisfy { $0 == 0 })

        // "(red:1.5)": in each half the red position is scaled 1.5x more than the rest, and the mean is kept.
        let weighted = try conditioning("a (red:1.5) cube on a table")
        for range in [0..<width1, width1..<(width1 + width2)] {
            let w = half(weighted.encoderHiddenStates, batch: 1, features: range), u = half(plain.encoderHiddenStates, batch: 1, features: range)
            let meanW = w.reduce(0, +) / Float(w.count), meanU = u.reduce(0, +) / Float(u.count)
            XCTAssertEqual(meanW, meanU, accuracy: abs(meanU) * 1e-4 + 1e-6, "mean restored (\(range))")
            let d = range.count
            let ratioOther = w[1 * d] / u[1 * d]           // "a" at position 1
            let ratioRed = w[2 * d] / u[2 * d]             // "red" at position 2
            XCTAssertEqual(ratioRed / ratioOther, 1.5, accuracy: 1e-3, "the weight (\(range))")
            _ = tok1
        }
        // The pooled embedding is not weighted.
        XCTAssertEqual(try weighted.textTime.unwrap().textEmbeds.scalars, try plain.textTime.unwrap().textEmbeds.scalars)
    }

    /// A prompt past 75 tokens keeps every token: a 77-position chunk per 75 tokens, and the pipeline runs on it; with a
    /// negative prompt both get the same chunk count.
    func testLongPromptsAndNegativePrompts() throws {
        let long = Array(repeating: "a red cube on a blue table", count: 15).joined(separator: ", ")
        let c = try conditioning(long, negative: "blurry")
        let tokens = try components.get().tokenizer.tokenize(long).count
        XCTAssertGreaterThan(tokens, 75)
        XCTAssertEqual(c.encoderHiddenStates.shape[1], 77 * ((tokens + 74) / 75))
        XCTAssertFalse(half(c.encoderHiddenStates, batch: 0, features: 0..<8).allSatisfy { $0 == 0 }, "the negative prompt is encoded")
        var o = GenerationOptions(prompt: long, negativePrompt: "blurry")
        o.promptSyntax = .a1111
        (o.height, o.width, o.numInferenceSteps, o.seed) = (64, 64, 2, 3)
        let result = try StableDiffusionXLPipeline(components: components.get())(o)
        XCTAssertEqual(result.images.shape, [1, 64, 64, 3])
        o.promptSyntax = .plain
        XCTAssertNotEqual(try StableDiffusionXLPipeline(components: components.get())(o).latents.scalars, result.latents.scalars)
    }
}

private extension Optional {
    func unwrap(file: StaticString = #filePath, line: UInt = #line) throws -> Wrapped { try XCTUnwrap(self, file: file, line: line) }
}
