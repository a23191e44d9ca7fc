import Foundation
import XCTest
import StableDiffusion

/// `--precision bf16` on whole models: the real SD 1.5 architectures (random weights, as `sd bench`
/// makes them) against fp32, and the bundled tiny model's picture against diffusers in fp32 and under
/// bf16 autocast (Scripts/reference/gen_bf16_fixtures.py).
final class BF16ModelTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipIf(ComputePrecision.bf16.unsupportedReason() != nil, "this CPU or build has no bf16 compute")
    }

    static let verbose = ProcessInfo.processInfo.environment["SD_PRINT_PSNR"] != nil

    /// The SD 1.5 UNet (860M parameters) on a 256x256 latent pair, bf16 against fp32, one model built at a time.
    func testSD15UNetStaysNearFP32() throws {
        let config = try UNet2DConditionConfig.load(ReferenceConfigs.root.appendingPathComponent("runwayml-stable-diffusion-v1-5/unet/config.json"))
        let x = RandomTensorSource(seed: 1, scale: 1).makeTensor("x", shape: [2, 32, 32, 4])
        let context = RandomTensorSource(seed: 2, scale: 1).makeTensor("ctx", shape: [2, 77, 768])
        func run(_ precision: ComputePrecision) throws -> Tensor {
            let unet = try UNet2DConditionModel(config: config, weights: RandomTensorSource(), precision: precision)
            return try unet(sample: x, timesteps: [500], encoderHiddenStates: context)
        }
        let reference = try run(.fp32)
        let e = try run(.bf16).relativeError(to: reference)
        if Self.verbose { print("SD 1.5 UNet bf16 relative error \(e)") }
        // Measured 1.2e-3: below one layer's 1.6e-3, since the GroupNorms and the residual paths (which
        // stay fp32) damp each layer's rounding. 5e-3 fails on a layer computing in the wrong layout or
        // on wrongly rounded data (1e-2 and more), not on run-to-run noise; fp32 would give 0.
        XCTAssertLessThan(e, 5e-3)
        XCTAssertGreaterThan(e, 5e-5, "no bf16 rounding seen: the UNet ran in fp32")
    }

    /// The SD 1.5 text encoder (CLIP ViT-L/14's text tower) on two prompts' worth of ids.
    func testSD15TextEncoderStaysNearFP32() throws {
        let config = CLIPTextConfig(hiddenSize: 768, intermediateSize: 3072, numHiddenLayers: 12, numAttentionHeads: 12)
        let ids = (0..<2).map { r in (0..<77).map { ($0 * 131 + r * 7) % config.vocabSize } }
        func run(_ precision: ComputePrecision) throws -> Tensor {
            try CLIPTextModel(config: config, weights: RandomTensorSource(), precision: precision)(inputIds: ids).lastHiddenState
        }
        let e = try run(.bf16).relativeError(to: try run(.fp32))
        if Self.verbose { print("SD 1.5 text encoder bf16 relative error \(e)") }
        // Measured 5.9e-4: each pre-LN layer adds its bf16 error to an fp32 residual stream it does not
        // own, which the embeddings dominate. 3e-3 is five times that; fp32 would give 0.
        XCTAssertLessThan(e, 3e-3)
        XCTAssertGreaterThan(e, 5e-5, "no bf16 rounding seen: the text encoder ran in fp32")
    }

    /// The tiny model's txt2img picture in bf16 (text encoder, UNet and VAE): near diffusers' fp32 picture,
    /// and at least as near to it as diffusers' own bf16 autocast picture is, less a margin.
    func testTinyPipelinePictureMatchesDiffusersWithinBF16() throws {
        let pipe = try StableDiffusionPipeline(modelDirectory: TinyModels.sd1, precision: .bf16)
        XCTAssertEqual(pipe.components.precision, .bf16)
        let c = try PipelineCase("sd1_txt2img")
        let autocast = try PipelineCase("sd1_txt2img_autocast_bf16")
        let result = try pipe(c.options)
        let fp32 = try c.expectedImages(), torchBF16 = try autocast.expectedImages()
        let torchPSNR = autocast.json["psnr_autocast_vs_fp32"]?.arrayValue?.compactMap(\.doubleValue) ?? []
        XCTAssertEqual(result.count, fp32.count)
        XCTAssertEqual(torchPSNR.count, fp32.count)
        for i in 0..<min(result.count, fp32.count, torchPSNR.count) {
            let ours = result.rgb8(i).map(Float.init)
            let (vsFP32, maxDiff) = psnr(ours, fp32[i].scalars)
            let (vsAutocast, _) = psnr(ours, torchBF16[i].scalars)
            if Self.verbose {
                print("image \(i): bf16 vs diffusers fp32 \(vsFP32) dB (max diff \(maxDiff)), vs diffusers autocast \(vsAutocast) dB; autocast vs fp32 \(torchPSNR[i]) dB")
            }
            // bf16 changes the picture (else it did not run) but stays within the fp32 parity bar.
            XCTAssertTrue(vsFP32.isFinite, "image \(i) is bit-identical to fp32")
            XCTAssertGreaterThanOrEqual(vsFP32, 40, "image \(i) PSNR against diffusers fp32")
            XCTAssertLessThanOrEqual(maxDiff, 16, "image \(i) max channel difference")
            // diffusers' autocast also rounds the layers' outputs and attention to bf16, so ours should
            // be at least about as close to fp32 as it is (3 dB: both are one draw of rounding noise).
            XCTAssertGreaterThanOrEqual(vsFP32, torchPSNR[i] - 3, "image \(i): further from fp32 than diffusers' autocast")
            XCTAssertGreaterThanOrEqual(vsAutocast, 40, "image \(i) PSNR against diffusers autocast")
        }
    }

    /// LoRA switching rebuilds the models in the precision they were loaded with.
    func testAdapterSwitchKeepsPrecision() throws {
        let c = try StableDiffusionComponents(directory: TinyModels.sd1, includeVAEEncoder: false, precision: .bf16)
        XCTAssertEqual(try c.withAdapters(ModelAdapters()).precision, .bf16)
    }

    func testPerModelDecision() {
        XCTAssertEqual(PipelineModel.allCases.map { ComputePrecision.fp32.forModel($0) }, [.fp32, .fp32, .fp32])
        XCTAssertEqual(ComputePrecision.bf16.forModel(.unet), .bf16)
        XCTAssertEqual(ComputePrecision.bf16.forModel(.textEncoder), .bf16)
        XCTAssertEqual(ComputePrecision.bf16.forModel(.vae), .bf16)
    }
}
