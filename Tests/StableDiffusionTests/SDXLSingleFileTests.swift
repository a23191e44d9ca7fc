import Foundation
import XCTest
import DiffusionTensor
import StableDiffusion

/// SDXL single files in Stability's SGM layout (Scripts/reference/gen_sdxl_single_file_fixtures.py): made from
/// the tiny SDXL base and refiner by original_layout.py, proven by diffusers' `from_single_file` giving the
/// folders' weights back exactly, and giving the pictures these tests compare with.
final class SDXLSingleFileTests: XCTestCase {
    func testBaseSingleFileIsDetectedAndMatchesDiffusers() throws {
        let url = try SingleFileFixtures.checkpoint("tiny-sdxl.safetensors")
        let detection = try SingleFileDetector.detect(SingleFileCheckpoint(url: url).source)
        XCTAssertEqual(detection.kind, .sdxl)
        XCTAssertEqual(detection.configName, "stabilityai-stable-diffusion-xl-base-1.0")
        let components = try StableDiffusionComponents(singleFile: url, configDirectory: TinyModels.sdxl, includeVAEEncoder: false)
        XCTAssertEqual(components.family, .stableDiffusionXL)
        XCTAssertEqual(components.tokenizer2?.padToken, "!")
        XCTAssertEqual(components.textEncoder2?.hasProjection, true)
        let c = try PipelineCase(singleFile: "sdxl")
        let result = try StableDiffusionXLPipeline(components: components)(c.options)
        assertImagesMatch(result, try c.expectedImages())
    }

    func testRefinerSingleFileMatchesDiffusers() throws {
        let url = try SingleFileFixtures.checkpoint("tiny-sdxl-refiner.safetensors")
        XCTAssertEqual(try SingleFileDetector.detect(SingleFileCheckpoint(url: url).source).kind, .sdxlRefiner)
        let components = try StableDiffusionComponents(singleFile: url, configDirectory: TinyModels.sdxlRefiner)
        XCTAssertTrue(components.hasOnlySecondTextEncoder)
        XCTAssertTrue(components.requiresAestheticsScore)
        let c = try PipelineCase(singleFile: "sdxl_refiner")
        let input = try Image.load(path: c.directory.appendingPathComponent("input.png").path)
        let result = try StableDiffusionXLImg2ImgPipeline(components: components)(
            c.options, image: try VaeImageProcessor().preprocess(input), strength: c.json["strength"]?.doubleValue)
        assertImagesMatch(result, try c.expectedImages())
    }

    /// Without --config the bundled full-size SDXL configs are used: the tiny file does not fit them, and the
    /// error names the file and a tensor.
    func testBundledConfigsAreFullSizeAndMismatchIsNamed() throws {
        let url = try SingleFileFixtures.checkpoint("tiny-sdxl.safetensors")
        let model = try SingleFileModel(url: url)
        XCTAssertEqual(model.detection?.kind, .sdxl)
        XCTAssertEqual(try UNet2DConditionConfig.load(model.configs.unetConfig).crossAttentionDim.first, 2048)
        XCTAssertEqual(try CLIPTokenizer(files: model.configs.tokenizerFiles("tokenizer_2")).padToken, "!")
        XCTAssertThrowsError(try StableDiffusionComponents(singleFile: url)) { error in
            XCTAssertTrue("\(error)".contains("tiny-sdxl.safetensors"), "\(error)")
        }
    }

    /// `sd convert` writes an SDXL diffusers folder (both tokenizers and text encoders, the projection kept)
    /// that loads back to diffusers' picture.
    func testConvertWritesAnSDXLFolder() throws {
        let out = try temporaryFolder(self)
        let folder = out.appendingPathComponent("converted")
        let r = try SDProcess.run(["convert", "--from", SingleFileFixtures.checkpoint("tiny-sdxl.safetensors").path, "--to", folder.path,
                                   "--config", TinyModels.sdxl.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(filesIn(folder), ["model_index.json", "scheduler", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "unet", "vae"])
        let weights = try SafeTensorsFile(path: folder.appendingPathComponent("text_encoder_2/model.safetensors").path)
        XCTAssertTrue(weights.tensorNames.contains("text_projection.weight"))
        XCTAssertTrue(weights.tensorNames.contains("text_model.final_layer_norm.weight"))
        let c = try PipelineCase(singleFile: "sdxl")
        let result = try StableDiffusionXLPipeline(components: StableDiffusionComponents(directory: folder, includeVAEEncoder: false))(c.options)
        assertImagesMatch(result, try c.expectedImages())
    }

    /// `sd txt2img --model FILE.safetensors` picks the SDXL pipeline from the file.
    func testCLIRunsAnSDXLSingleFile() throws {
        let out = try temporaryFolder(self)
        let c = try PipelineCase(singleFile: "sdxl")
        let png = out.appendingPathComponent("a.png").path
        let r = try SDProcess.run(["txt2img", "--model", SingleFileFixtures.checkpoint("tiny-sdxl.safetensors").path,
                                   "--config", TinyModels.sdxl.path, "--output", png, "--prompt", c.json["prompt"]?.stringValue ?? "",
                                   "--negative-prompt", "blurry", "--height", "64", "--width", "64", "--steps", "4", "--guidance-scale", "5",
                                   "--seed", "31"])
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertPNGMatches(png, c)
    }

    /// A file whose OpenCLIP projection is not 2-D cannot be transposed: the tensor has no shape, so the
    /// model's shape check refuses it (naming the file) before any weight is read.
    func testBrokenProjectionIsNamed() throws {
        let url = try SingleFileFixtures.checkpoint("tiny-sdxl.safetensors")
        let source = try SafeTensorsFile(path: url.path)
        var shapes: [String: [Int]] = [:]
        for n in source.tensorNames { shapes[n] = source.shape(of: n) }
        shapes["conditioner.embedders.1.model.text_projection"] = [48]
        let layout = try SingleFileDetector.layout(shapes: shapes, file: url.path)
        let convert = OriginalCheckpointConverter(source: ShapeOnlySource(shapes: shapes, sourceDescription: url.path), layout: layout)
        let config = try CLIPTextConfig.load(from: TinyModels.sdxl.appendingPathComponent("text_encoder_2"))
        let text = try convert.textEncoder(config, layout.textEncoders[1])
        XCTAssertNil(text.shape(of: "text_projection.weight"))
        XCTAssertEqual(text.shape(of: "text_model.final_layer_norm.weight"), [48])
    }
}
