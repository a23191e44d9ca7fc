import Foundation
import XCTest
import StableDiffusion

/// LoRA merged at load against diffusers' `load_lora_weights` + `fuse_lora` / `set_adapters`, and the
/// errors for files that do not fit.
final class LoRATests: XCTestCase {
    /// kohya/A1111 keys, alpha 2 with ranks 4 and 2, UNet (attention, feed-forward, 1x1 proj_in, LoCon 3x3
    /// resnet/downsampler convs, time embedding projection, shortcut) and text encoder (attention, MLP), scale 0.8.
    func testKohyaLoRAMatchesDiffusers() throws { try AdapterFixtures.Case("sd1_kohya").check() }
    /// diffusers/PEFT keys (lora_A/lora_B, no alpha: scale 1 whatever the rank).
    func testPEFTLoRAMatchesDiffusers() throws { try AdapterFixtures.Case("sd1_peft").check() }
    /// diffusers/PEFT keys with the LoraConfig in the file's metadata (lora_alpha 8 with ranks 4 and 2,
    /// alpha_pattern for two convolutions; text encoder lora_alpha 4), scale 0.9.
    func testPEFTLoRAWithStoredConfigMatchesDiffusers() throws { try AdapterFixtures.Case("sd1_peft_config").check() }
    /// Two LoRAs at once (`set_adapters([...], [0.7, 0.5])`).
    func testTwoLoRAsMatchDiffusers() throws { try AdapterFixtures.Case("sd1_two").check() }
    /// SD 2.x (linear projections), kohya without alpha.
    func testSD2KohyaWithoutAlphaMatchesDiffusers() throws { try AdapterFixtures.Case("sd2_kohya_noalpha").check() }

    /// The fixtures' LoRAs change the picture well beyond the parity threshold (so the parity tests mean something).
    func testLoRAsChangeThePicture() throws {
        let base = try StableDiffusionPipeline(modelDirectory: TinyModels.sd1)
        for name in ["sd1_kohya", "sd1_peft"] {
            let c = try AdapterFixtures.Case(name)
            let (p, _) = psnr(try base(c.options).rgb8(0).map(Float.init), c.expected[0].scalars)
            XCTAssertLessThan(p, 30, name)
        }
    }

    /// Switching LoRA sets on loaded components (what a server does): with the LoRA the picture is
    /// diffusers' fused one, back without it the plain model's, bit for bit.
    func testSwitchingAdaptersIsClean() throws {
        let c = try AdapterFixtures.Case("sd1_kohya")
        let plain = try StableDiffusionComponents(directory: TinyModels.sd1, includeVAEEncoder: false)
        let before = try StableDiffusionPipeline(components: plain)(c.options).images
        let withLoRA = try plain.withAdapters(try c.adapters)
        XCTAssertEqual(withLoRA.adapters, try c.adapters)
        assertImagesMatch(try StableDiffusionPipeline(components: withLoRA)(c.options), c.expected)
        let back = try withLoRA.withAdapters(ModelAdapters())
        XCTAssertEqual(try StableDiffusionPipeline(components: back)(c.options).images.scalars, before.scalars)
    }

    /// The merge rule per layer, with each layer's own alpha (as A1111): W + scale * alpha/rank * up @ down,
    /// for a linear layer and a 3x3 convolution with a 1x1 up.
    func testMergeRuleWithPerLayerAlpha() throws {
        let w = try Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        let conv = Tensor(zeros: [2, 1, 3, 3])
        let base = TensorDictionary(["a.weight": w, "c.weight": conv])
        let dir = try temporaryFolder(self)
        let path = dir.appendingPathComponent("l.safetensors").path
        let down = try Tensor(shape: [1, 3], scalars: [1, 0, 2]), up = try Tensor(shape: [2, 1], scalars: [1, -1])
        let cdown = Tensor(repeating: 1, shape: [1, 1, 3, 3]), cup = try Tensor(shape: [2, 1, 1, 1], scalars: [2, 3])
        try SafeTensorsWriter.write([("lora_unet_a.lora_down.weight", down, .float32), ("lora_unet_a.lora_up.weight", up, .float32),
                                     ("lora_unet_a.alpha", Tensor(repeating: 0.5, shape: []), .float32),
                                     ("lora_unet_c.lora_down.weight", cdown, .float32), ("lora_unet_c.lora_up.weight", cup, .float32),
                                     ("lora_unet_c.alpha", Tensor(repeating: 2, shape: []), .float32)], to: path)
        let merged = try ModelAdapters(loras: [LoRA(file: URL(fileURLWithPath: path), scale: 0.5)]).mergingLoRAs(into: base, for: .unet)
        // a: 0.5 * 0.5/1 * [[1, 0, 2], [-1, 0, -2]]
        XCTAssertEqual(try merged.tensor("a.weight").scalars, [1.25, 2, 3.5, 3.75, 5, 5.5])
        // c: 0.5 * 2/1 * [2, 3] x ones
        XCTAssertEqual(try merged.tensor("c.weight").scalars, [Float](repeating: 2, count: 9) + [Float](repeating: 3, count: 9))
        XCTAssertEqual(merged.shape(of: "c.weight"), [2, 1, 3, 3])
    }

    /// Every key spelling diffusers reads names the same text-encoder layer, with or without `text_model.`.
    func testKeySpellings() throws {
        let base = TensorDictionary(["encoder.layers.0.self_attn.q_proj.weight": Tensor(zeros: [2, 2]),
                                     "encoder.layers.0.self_attn.out_proj.weight": Tensor(zeros: [2, 2]),
                                     "encoder.layers.0.mlp.fc1.weight": Tensor(zeros: [2, 2])])
        let spellings: [(String, String, String)] = [
            ("lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", "q_proj"),
            ("lora_te_encoder_layers_0_mlp_fc1.lora_down.weight", "lora_te_encoder_layers_0_mlp_fc1.lora_up.weight", "fc1"),
            ("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight", "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight", "q_proj"),
            ("text_encoder.encoder.layers.0.mlp.fc1.lora_A.weight", "text_encoder.encoder.layers.0.mlp.fc1.lora_B.weight", "fc1"),
            ("text_encoder.text_model.encoder.layers.0.self_attn.to_out_lora.down.weight", "text_encoder.text_model.encoder.layers.0.self_attn.to_out_lora.up.weight", "out_proj"),
            ("text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_linear_layer.down.weight", "text_encoder.text_model.encoder.layers.0.mlp.fc1.lora_linear_layer.up.weight", "fc1"),
        ]
        let dir = try temporaryFolder(self)
        for (i, (down, up, layer)) in spellings.enumerated() {
            let path = dir.appendingPathComponent("\(i).safetensors").path
            try SafeTensorsWriter.write([(down, Tensor(repeating: 1, shape: [1, 2]), .float32), (up, Tensor(repeating: 1, shape: [2, 1]), .float32)], to: path)
            let merged = try ModelAdapters(loras: [LoRA(file: URL(fileURLWithPath: path))]).mergingLoRAs(into: base, for: .textEncoder)
            let name = base.tensorNames.first { $0.contains(layer) } ?? ""
            XCTAssertEqual(try merged.tensor(name).scalars, [1, 1, 1, 1], down)
        }
        // The UNet's attention-processor spelling: attn1.processor.to_out_lora is attn1.to_out.0.
        let unet = TensorDictionary(["mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0.weight": Tensor(zeros: [2, 2])])
        let path = dir.appendingPathComponent("u.safetensors").path
        try SafeTensorsWriter.write([("unet.mid_block.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.down.weight", Tensor(repeating: 1, shape: [1, 2]), .float32),
                                     ("unet.mid_block.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.up.weight", Tensor(repeating: 2, shape: [2, 1]), .float32)], to: path)
        let merged = try ModelAdapters(loras: [LoRA(file: URL(fileURLWithPath: path))]).mergingLoRAs(into: unet, for: .unet)
        XCTAssertEqual(try merged.tensor(unet.tensorNames[0]).scalars, [2, 2, 2, 2])
    }

    /// Writes a LoRA file with `tensors` (fp32) and returns the error loading it onto tiny-sd1 gives.
    func loadError(_ tensors: [(String, [Int])]) throws -> String {
        let path = try temporaryFolder(self).appendingPathComponent("bad.safetensors").path
        try SafeTensorsWriter.write(tensors.map { ($0.0, Tensor(repeating: 0.1, shape: $0.1), .float32) }, to: path)
        do {
            _ = try StableDiffusionComponents(directory: TinyModels.sd1, includeVAEEncoder: false,
                                              adapters: ModelAdapters(loras: [LoRA(file: URL(fileURLWithPath: path))]))
            XCTFail("loaded")
            return ""
        } catch {
            let message = "\(error)"
            XCTAssertTrue(message.contains(path), message)
            return message
        }
    }

    func testUnknownKeysAreErrorsNamingThem() throws {
        var m = try loadError([("lora_unet_down_blocks_0_nope.lora_down.weight", [4, 32]), ("lora_unet_down_blocks_0_nope.lora_up.weight", [32, 4])])
        XCTAssertTrue(m.contains("lora_unet_down_blocks_0_nope.lora_down.weight"), m)
        XCTAssertTrue(m.contains("no layer of the UNet"), m)
        // LoHa is named as unsupported; SDXL's second text encoder on an SD 1.x model is named as missing there.
        m = try loadError([("lora_unet_down_blocks_0_resnets_0_conv1.hada_w1_a", [32, 4])])
        XCTAssertTrue(m.contains("lora_unet_down_blocks_0_resnets_0_conv1.hada_w1_a") && m.contains("LoHa"), m)
        m = try loadError([("lora_te2_x.lora_down.weight", [4, 32]), ("lora_te2_x.lora_up.weight", [32, 4])])
        XCTAssertTrue(m.contains("lora_te2_x.lora_down.weight") && m.contains("second text encoder"), m)
        m = try loadError([("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight", [4, 32])])
        XCTAssertTrue(m.contains("lora_A.weight") && m.contains("no up (B)"), m)
        m = try loadError([("text_encoder.text_model.encoder.layers.9.self_attn.q_proj.lora_A.weight", [4, 32]),
                           ("text_encoder.text_model.encoder.layers.9.self_attn.q_proj.lora_B.weight", [32, 4])])
        XCTAssertTrue(m.contains("layers.9.self_attn.q_proj.lora_A.weight") && m.contains("text encoder"), m)
    }

    /// An SD 2.x LoRA (cross-attention from 1024-wide text states) on an SD 1.x model (768): refused by shape.
    func testOtherArchitectureIsRefusedByShape() throws {
        let m = try loadError([("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight", [4, 48]),
                               ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight", [32, 4])])
        XCTAssertTrue(m.contains("attn2_to_k.lora_down.weight"), m)
        XCTAssertTrue(m.contains("another architecture"), m)
    }

    func testMissingAndCorruptFilesAreErrors() throws {
        let dir = try temporaryFolder(self)
        let missing = dir.appendingPathComponent("none.safetensors")
        func load(_ url: URL) throws { _ = try ModelAdapters(loras: [LoRA(file: url)]).mergingLoRAs(into: TensorDictionary([:]), for: .unet) }
        XCTAssertThrowsError(try load(missing)) { XCTAssertTrue("\($0)".contains(missing.path)) }
        let junk = dir.appendingPathComponent("junk.safetensors")
        try Data("not a safetensors file".utf8).write(to: junk)
        XCTAssertThrowsError(try load(junk)) { XCTAssertTrue("\($0)".contains(junk.path), "\($0)") }
    }

    func testPromptTagsResolveInsideTheFolderOnly() throws {
        let dir = try AdapterFixtures.folder
        let (text, loras) = try LoRAPromptTags.extract(from: "a <lora:sd1_kohya:0.8> cat <lora:sd1_peft>", directory: dir)
        XCTAssertEqual(text, "a  cat ")
        XCTAssertEqual(loras, [LoRA(file: dir.appendingPathComponent("sd1_kohya.safetensors"), scale: 0.8),
                               LoRA(file: dir.appendingPathComponent("sd1_peft.safetensors"), scale: 1)])
        XCTAssertEqual(try LoRAPromptTags.extract(from: "no tags <hypernet:x:1>", directory: nil).prompt, "no tags <hypernet:x:1>")
        for bad in ["<lora:../lora/sd1_kohya:1>", "<lora:/etc/passwd>", "<lora:missing:1>", "<lora:sd1_kohya:x>", "<lora:sd1_kohya:1:2>"] {
            XCTAssertThrowsError(try LoRAPromptTags.extract(from: bad, directory: dir), bad)
        }
        XCTAssertThrowsError(try LoRAPromptTags.extract(from: "<lora:sd1_kohya>", directory: nil))
        // A link inside the folder that leads out of it is refused.
        let inside = try temporaryFolder(self), outside = try temporaryFolder(self)
        try Data().write(to: outside.appendingPathComponent("x.safetensors"))
        try FileManager.default.createSymbolicLink(at: inside.appendingPathComponent("evil.safetensors"),
                                                   withDestinationURL: outside.appendingPathComponent("x.safetensors"))
        XCTAssertThrowsError(try LoRAPromptTags.extract(from: "<lora:evil>", directory: inside)) { XCTAssertTrue("\($0)".contains("outside"), "\($0)") }
    }

    func testCLIArgumentForms() throws {
        XCTAssertEqual(try LoRA(argument: "/a/b.safetensors:0.5"), LoRA(file: URL(fileURLWithPath: "/a/b.safetensors"), scale: 0.5))
        XCTAssertEqual(try LoRA(argument: "/a/b.safetensors"), LoRA(file: URL(fileURLWithPath: "/a/b.safetensors"), scale: 1))
        XCTAssertEqual(try LoRA(argument: "c:/x.safetensors").scale, 1)
        XCTAssertThrowsError(try LoRA(argument: "x.safetensors:inf"))
    }
}
