import Foundation
import XCTest
import StableDiffusion

/// AutoencoderKL against diffusers on small random models (Scripts/reference/gen_model_fixtures.py).
final class AutoencoderTests: XCTestCase {
    func runCase(_ name: String, scaleFactor: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let dir = try FixturePaths.url("models/\(name)")
        let config = try AutoencoderKLConfig.load(dir.appendingPathComponent("config.json"))
        XCTAssertEqual(config.scaleFactor, scaleFactor)
        let vae = try AutoencoderKL(config: config, weights: SafeTensorsFile(path: dir.appendingPathComponent("weights.safetensors").path))
        let io = try SafeTensorsFile(path: dir.appendingPathComponent("io.safetensors").path)
        let dist = try vae.encode(io.tensor("image"))
        assertClose(dist.mean, try io.tensor("mean"), tolerance: 1e-4, "\(name) mean", file: file, line: line)
        assertClose(dist.logVariance, try io.tensor("logvar"), tolerance: 1e-4, "\(name) logvar", file: file, line: line)
        assertClose(try dist.sample(noise: io.tensor("noise")), try io.tensor("sample"), tolerance: 1e-4, "\(name) sample", file: file, line: line)
        assertClose(try vae.decode(io.tensor("latents")), try io.tensor("decoded"), tolerance: 1e-4, "\(name) decode", file: file, line: line)
    }

    func testSDStyle() throws { try runCase("vae_sd", scaleFactor: 2) }
    /// Three blocks (scale factor 4, as the x4 upscaler's VAE), two layers per block.
    func testThreeBlocks() throws { try runCase("vae_x4", scaleFactor: 4) }
    /// Pre-0.14 attention names (query/key/value/proj_attn).
    func testLegacyAttentionNames() throws { try runCase("vae_legacy_names", scaleFactor: 2) }

    func testDecoderOnlyIgnoresEncoderWeights() throws {
        let dir = try FixturePaths.url("models/vae_sd")
        let vae = try AutoencoderKL(config: AutoencoderKLConfig.load(dir.appendingPathComponent("config.json")),
                                    weights: SafeTensorsFile(path: dir.appendingPathComponent("weights.safetensors").path),
                                    includeEncoder: false)
        let io = try SafeTensorsFile(path: dir.appendingPathComponent("io.safetensors").path)
        assertClose(try vae.decode(io.tensor("latents")), try io.tensor("decoded"), tolerance: 1e-4)
        XCTAssertThrowsError(try vae.encode(io.tensor("image")))
    }

    func testConfigErrorsNameTheKey() throws {
        for (json, key) in [(#"{"down_block_types": ["DownBlock2D"], "up_block_types": ["UpDecoderBlock2D"]}"#, "down_block_types"),
                            (#"{"latents_mean": [1, 2, 3, 4]}"#, "latents_mean"),
                            (#"{"scaling_factor": "x"}"#, "scaling_factor")] {
            XCTAssertThrowsError(try AutoencoderKLConfig(ConfigReader(file: "vae/config.json", data: Data(json.utf8)))) {
                XCTAssertEqual(($0 as? ModelConfigError)?.key, key, json)
            }
        }
    }

    func testReferenceConfigsBuildAndLoad() throws {
        let refs = try FixturePaths.url("manifests")
        for repo in ReferenceConfigs.repositories {
            let configURL = try ReferenceConfigs.root.appendingPathComponent("\(repo)/vae/config.json")
            let config = try AutoencoderKLConfig.load(configURL)
            XCTAssertEqual(config.scaleFactor, repo.contains("x4-upscaler") ? 4 : 8, repo)
            let source = try ManifestSource(manifest: refs.appendingPathComponent("\(repo)-vae.json"))
            XCTAssertNoThrow(try AutoencoderKL(config: config, weights: source), repo)
        }
    }
}
