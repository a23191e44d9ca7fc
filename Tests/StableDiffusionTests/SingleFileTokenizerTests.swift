import Foundation
import XCTest
import StableDiffusion

/// Single files carry no tokenizer: the bundled one (the real CLIP BPE plus each repository's tokenizer
/// configs) must tokenize exactly as transformers does with the real files, SD 2's "!" padding included.
extension TokenizerTests {
    func testBundledSingleFileTokenizersMatchTransformers() throws {
        let flavours = ["runwayml-stable-diffusion-v1-5": "sd1", "runwayml-stable-diffusion-inpainting": "sd1",
                        "stabilityai-stable-diffusion-2-1": "sd2", "stabilityai-stable-diffusion-2-1-base": "sd2",
                        "stabilityai-stable-diffusion-2-inpainting": "sd2", "stabilityai-stable-diffusion-2-depth": "sd2",
                        "stabilityai-stable-diffusion-x4-upscaler": "sd2"]
        for (name, flavour) in flavours {
            let tokenizer = try CLIPTokenizer(files: DiffusersConfigFolder.bundled(name).tokenizerFiles())
            XCTAssertEqual(tokenizer.padToken, flavour == "sd2" ? "!" : "<|endoftext|>", name)
            try assertMatchesTransformers(tokenizer, config: flavour)
        }
    }
}
