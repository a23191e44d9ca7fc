import Foundation
import XCTest
import StableDiffusion

/// End-to-end parity with diffusers' StableDiffusionPipeline on the bundled tiny models.
final class TextToImageTests: XCTestCase {
    static let sd1 = Result { try StableDiffusionPipeline(modelDirectory: TinyModels.sd1) }
    static let sd2 = Result { try StableDiffusionPipeline(modelDirectory: TinyModels.sd2) }

    func check(_ name: String, _ pipeline: StableDiffusionPipeline) throws {
        let c = try PipelineCase(name)
        let result = try pipeline(c.options)
        assertImagesMatch(result, try c.expectedImages())
    }

    /// PNDM, fp16 weights, vocab.json tokenizer, negative prompt, 2 images per prompt, 96x64.
    func testSD1NegativePromptTwoImagesNonSquare() throws { try check("sd1_txt2img", Self.sd1.get()) }
    /// Two prompts in one call, default size from the config.
    func testSD1PromptBatch() throws { try check("sd1_txt2img_batch", Self.sd1.get()) }
    /// v-prediction DDIM, linear projections, upcast attention, tokenizer.json, gelu text encoder.
    func testSD2VPredictionDDIM() throws { try check("sd2_txt2img", Self.sd2.get()) }
    /// Guidance 1: no classifier-free guidance.
    func testSD2WithoutGuidance() throws { try check("sd2_txt2img_nocfg", Self.sd2.get()) }

    /// The intermediate tensors agree too: prompt embeddings (negative first) and the final latents.
    func testPromptEmbeddingsAndFinalLatentsMatch() throws {
        for (name, pipe) in [("sd1_txt2img", try Self.sd1.get()), ("sd2_txt2img", try Self.sd2.get())] {
            let c = try PipelineCase(name)
            let embeds = try pipe.components.encodePrompt(c.options)
            let expected = try Tensor.concatenate([c.tensors.tensor("negative_prompt_embeds"), c.tensors.tensor("prompt_embeds")], axis: 0)
            assertClose(embeds, expected, tolerance: 1e-4, name)
            let result = try pipe(c.options)
            XCTAssertEqual(result.seed, c.options.seed)
            assertClose(result.latents, try c.tensors.tensor("final_latents"), tolerance: 1e-3, name)
        }
    }

    func testInvalidArgumentsAreRejectedBeforeWork() throws {
        let pipe = try Self.sd1.get()
        var o = GenerationOptions(prompt: "x")
        o.height = 60
        XCTAssertThrowsError(try pipe(o)) { XCTAssertEqual($0 as? PipelineError, .invalidArgument("height must be a positive multiple of 8, got 60")) }
        o = GenerationOptions(prompt: "x"); o.numInferenceSteps = 0
        XCTAssertThrowsError(try pipe(o))
        o = GenerationOptions(prompt: "x"); o.numImagesPerPrompt = 0
        XCTAssertThrowsError(try pipe(o))
        o = GenerationOptions(prompt: "x"); o.scheduler = "nope"
        XCTAssertThrowsError(try pipe(o))
        o = GenerationOptions(prompts: ["a", "b"], negativePrompts: ["x", "y", "z"])
        XCTAssertThrowsError(try pipe(o))
    }

    /// A finished generation hands its large buffers back: a server waiting for work holds its weights,
    /// not the decode's activations (512x512 makes the tiny VAE's last feature maps 16 MiB, pooled ones).
    func testGenerationKeepsNoLargeBuffersAfterward() throws {
        var o = GenerationOptions(prompt: "x")
        o.numInferenceSteps = 1; o.height = 512; o.width = 512
        _ = try Self.sd1.get()(o)
        let pool = TensorStorage.poolStatistics
        XCTAssertEqual(pool.keptBytes, 0, "\(pool)")
        XCTAssertEqual(pool.highWaterBytes, pool.liveBytes, "\(pool)")
    }

    func testProgressCanCancel() throws {
        var o = GenerationOptions(prompt: "x")
        o.numInferenceSteps = 3; o.height = 32; o.width = 32
        var seen = 0
        XCTAssertThrowsError(try Self.sd1.get()(o) { p in seen = p.step; return p.step < 2 }) {
            XCTAssertEqual($0 as? PipelineError, .cancelled)
        }
        XCTAssertEqual(seen, 2)
    }
}
