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
}
