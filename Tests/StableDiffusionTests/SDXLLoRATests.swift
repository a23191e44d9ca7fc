import Foundation
import XCTest
import StableDiffusion

/// LoRA on SDXL (Scripts/reference/gen_sdxl_lora_fixtures.py): kohya files with the original (SGM) UNet names
/// and `lora_te1_`/`lora_te2_`, and diffusers/PEFT files with `unet.`/`text_encoder.`/`text_encoder_2.`; both
/// text encoders, two transformer layers per block, convolutions, the add_embedding MLP.
final class SDXLLoRATests: XCTestCase {
    func run(_ name: String, components: (ModelAdapters) throws -> StableDiffusionComponents) throws {
        let c = try PipelineCase(lora: name)
        let file = try FixturePaths.url("lora/\(name).safetensors")
        let scale = Float(c.json["lora_scale"]?.doubleValue ?? 1)
        let comps = try components(ModelAdapters(loras: [LoRA(file: file, scale: scale)]))
        let result = try StableDiffusionXLPipeline(components: comps)(c.options)
        assertImagesMatch(result, try c.expectedImages())
    }

    func testKohyaFileWithOriginalUNetNames() throws {
        try run("sdxl_kohya") { try StableDiffusionComponents(directory: TinyModels.sdxl, includeVAEEncoder: false, adapters: $0) }
    }

    func testPEFTFile() throws {
        try run("sdxl_peft") { try StableDiffusionComponents(directory: TinyModels.sdxl, includeVAEEncoder: false, adapters: $0) }
    }

    /// The same LoRA on the SDXL single file (converted names underneath) gives the same picture.
    func testLoRAOnASingleFile() throws {
        try run("sdxl_kohya") {
            try StableDiffusionComponents(singleFile: SingleFileFixtures.checkpoint("tiny-sdxl.safetensors"), configDirectory: TinyModels.sdxl,
                                          includeVAEEncoder: false, adapters: $0)
        }
    }

    /// Switching sets (as the server does for `<lora:…>` tags) rebuilds both encoders and the UNet: with
    /// the LoRA the fixture's picture, without it the plain model's again.
    func testSwitchingAdaptersOnAnSDXLFolder() throws {
        let plain = try StableDiffusionComponents(directory: TinyModels.sdxl, includeVAEEncoder: false)
        let c = try PipelineCase(lora: "sdxl_peft")
        let before = try StableDiffusionXLPipeline(components: plain)(c.options)
        XCTAssertLessThan(psnr(before.rgb8(0).map(Float.init), try c.expectedImages()[0].scalars).psnr, 40, "the LoRA changes the picture")
        let with = try plain.withAdapters(ModelAdapters(loras: [LoRA(file: try FixturePaths.url("lora/sdxl_peft.safetensors"))]))
        XCTAssertNotNil(with.textEncoder2)
        assertImagesMatch(try StableDiffusionXLPipeline(components: with)(c.options), try c.expectedImages())
        let back = try with.withAdapters(ModelAdapters())
        XCTAssertEqual(try StableDiffusionXLPipeline(components: back)(c.options).latents.scalars, before.latents.scalars)
    }

    /// An SD 1.x LoRA on SDXL and an SDXL LoRA on SD 1.x: errors naming the file.
    func testLoRAsOfTheOtherFamilyAreRefused() throws {
        let sd1LoRA = try FixturePaths.url("lora/sd1_kohya.safetensors")
        XCTAssertThrowsError(try StableDiffusionComponents(directory: TinyModels.sdxl, adapters: ModelAdapters(loras: [LoRA(file: sd1LoRA)]))) {
            XCTAssertTrue("\($0)".contains(sd1LoRA.path), "\($0)")
        }
        let xlLoRA = try FixturePaths.url("lora/sdxl_kohya.safetensors")
        XCTAssertThrowsError(try StableDiffusionComponents(directory: TinyModels.sd1, adapters: ModelAdapters(loras: [LoRA(file: xlLoRA)]))) {
            XCTAssertTrue("\($0)".contains(xlLoRA.path), "\($0)")
        }
    }

    /// An SDXL embedding (clip_l + clip_g, two vectors each) added to both tokenizers and encoders, as
    /// diffusers' two load_textual_inversion calls; the token is the file name.
    func testSDXLEmbeddingFile() throws {
        let c = try PipelineCase(lora: "sdxl_embedding")
        let file = try FixturePaths.url("lora/sdxl_embedding.safetensors")
        let comps = try StableDiffusionComponents(directory: TinyModels.sdxl, includeVAEEncoder: false,
                                                  adapters: ModelAdapters(embeddings: [TextualInversion(file: file)]))
        XCTAssertNotNil(comps.tokenizer.tokenID(for: "sdxl_embedding_1"))
        XCTAssertNotNil(comps.tokenizer2?.tokenID(for: "sdxl_embedding_1"))
        assertImagesMatch(try StableDiffusionXLPipeline(components: comps)(c.options), try c.expectedImages())
        // An SD embedding on SDXL, and the SDXL one on SD: errors naming the file.
        let sd = try FixturePaths.url("lora/learned_embeds.safetensors")
        XCTAssertThrowsError(try StableDiffusionComponents(directory: TinyModels.sdxl, adapters: ModelAdapters(embeddings: [TextualInversion(file: sd)]))) {
            XCTAssertTrue("\($0)".contains(sd.path) && "\($0)".contains("clip_l"), "\($0)")
        }
        XCTAssertThrowsError(try StableDiffusionComponents(directory: TinyModels.sd1, adapters: ModelAdapters(embeddings: [TextualInversion(file: file)]))) {
            XCTAssertTrue("\($0)".contains(file.path) && "\($0)".contains("SDXL"), "\($0)")
        }
    }
}
