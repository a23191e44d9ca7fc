import Foundation
import StableDiffusion
import XCTest

/// How configs are read, as diffusers' `ConfigMixin` reads them: `_use_default_values`, explicit nulls, and
/// JSON as Python writes it.
final class ConfigConventionsTests: XCTestCase {
    func unet(_ json: String) throws -> UNet2DConditionConfig {
        try UNet2DConditionConfig(ConfigReader(file: "unet/config.json", data: Data(json.utf8)))
    }

    func vae(_ json: String) throws -> AutoencoderKLConfig {
        try AutoencoderKLConfig(ConfigReader(file: "vae/config.json", data: Data(json.utf8)))
    }

    func testUsedDefaultsAreDroppedFromModelConfigs() throws {
        // The saving class's defaults listed as never set: the model's own defaults apply.
        let c = try unet(#"{"upcast_attention": true, "use_linear_projection": true, "_use_default_values": ["upcast_attention"]}"#)
        XCTAssertFalse(c.upcastAttention)
        XCTAssertTrue(c.useLinearProjection)
        // A key the model does not know is not an error when it was only a default of another class.
        XCTAssertNoThrow(try unet(#"{"some_future_option": 3, "_use_default_values": ["some_future_option"]}"#))
        let v = try vae(#"{"scaling_factor": 0.5, "_use_default_values": ["scaling_factor"]}"#)
        XCTAssertEqual(v.scalingFactor, 0.18215)
    }

    func testExplicitNullsInModelConfigsMeanNone() throws {
        // Flags: diffusers tests `if flag:`, so None is off (flip_sin_to_cos defaults to on).
        XCTAssertFalse(try unet(#"{"flip_sin_to_cos": null}"#).flipSinToCos)
        XCTAssertTrue(try unet(#"{}"#).flipSinToCos)
        XCTAssertFalse(try vae(#"{"use_quant_conv": null}"#).useQuantConv)
        // Parameters whose default is None: null is that default.
        XCTAssertNil(try unet(#"{"num_class_embeds": null, "class_embed_type": null}"#).classEmbedding)
        XCTAssertFalse(try unet(#"{"mid_block_type": null}"#).hasMidBlock)
        XCTAssertEqual(try unet(#"{"time_embedding_dim": null}"#).timeEmbeddingDim, 320 * 4)
        // Parameters diffusers cannot build a model with as None: an error naming the key.
        for key in ["in_channels", "norm_num_groups", "block_out_channels", "down_block_types", "layers_per_block",
                    "attention_head_dim", "cross_attention_dim", "only_cross_attention", "resnet_time_scale_shift", "freq_shift"] {
            XCTAssertThrowsError(try unet("{\"\(key)\": null}"), key) { error in
                XCTAssertEqual((error as? ModelConfigError)?.key, key, "\(error)")
            }
        }
        for key in ["latent_channels", "scaling_factor", "block_out_channels"] {
            XCTAssertThrowsError(try vae("{\"\(key)\": null}"), key) { error in
                XCTAssertEqual((error as? ModelConfigError)?.key, key, "\(error)")
            }
        }
    }

    func testGroupCountsThatCannotSplitTheChannelsNameTheKey() throws {
        // 0 trapped on the division (found by the config fuzz target); negatives and non-divisors are as
        // unbuildable in diffusers' GroupNorm.
        for groups in [0, -32, 7] {
            for (model, build) in [("unet", { try _ = self.unet($0) }), ("vae", { try _ = self.vae($0) })] as [(String, (String) throws -> Void)] {
                XCTAssertThrowsError(try build("{\"norm_num_groups\": \(groups)}"), "\(model) \(groups)") { error in
                    XCTAssertEqual((error as? ModelConfigError)?.key, "norm_num_groups", "\(error)")
                }
            }
        }
        XCTAssertEqual(try vae(#"{"norm_num_groups": 16, "block_out_channels": [32, 48]}"#).normNumGroups, 16)
    }

    func testSampleSizesThatCannotMakeAnImageSizeNameTheKey() throws {
        // Pipelines default the image to sample_size * the VAE scale factor: 2^62 trapped on that product.
        for bad in ["0", "-1", "\(1 << 17)", "4611686018427387904", "\"64\"", "[]", "[\"a\"]"] {
            for (model, build) in [("unet", { try _ = self.unet($0) }), ("vae", { try _ = self.vae($0) })] as [(String, (String) throws -> Void)] {
                XCTAssertThrowsError(try build("{\"sample_size\": \(bad)}"), "\(model) \(bad)") { error in
                    XCTAssertEqual((error as? ModelConfigError)?.key, "sample_size", "\(error)")
                }
            }
        }
        XCTAssertEqual(try unet(#"{"sample_size": [96, 64]}"#).sampleSize, 96)
        XCTAssertEqual(try vae(#"{"sample_size": 768}"#).sampleSize, 768)
        XCTAssertNil(try unet(#"{"sample_size": null}"#).sampleSize)
        // 65 VAE blocks made the scale factor 1 << 64 = 0, a division by zero in every pipeline.
        let blocks = Array(repeating: "32", count: 17).joined(separator: ",")
        XCTAssertThrowsError(try vae("{\"block_out_channels\": [\(blocks)], \"norm_num_groups\": 32}")) { error in
            XCTAssertEqual((error as? ModelConfigError)?.key, "block_out_channels", "\(error)")
        }
    }

    func testUsedDefaultsAreDroppedFromSchedulerConfigs() throws {
        let json = #"{"_class_name": "PNDMScheduler", "timestep_spacing": "leading", "steps_offset": 1, "_use_default_values": ["timestep_spacing"]}"#
        let config = try SchedulerConfig(jsonData: Data(json.utf8), source: "scheduler_config.json")
        XCTAssertNil(config.values["timestep_spacing"])
        XCTAssertNil(config.values["_use_default_values"])
        XCTAssertEqual(config.values["steps_offset"], .int(1))
        var euler = try Schedulers.make(cliName: "euler", config: config)
        try euler.setTimesteps(3)
        XCTAssertEqual(euler.timesteps, [999, 499.5, 0])  // Euler's own linspace spacing
    }

    /// Python's json writes NaN and +-Infinity (diffusers saves DPM-Solver's lambda_min_clipped as -Infinity).
    func testJSONAsPythonWritesIt() throws {
        let v = try JSONValue.parse(Data(#"{"a": -Infinity, "b": Infinity, "c": NaN, "d": 1, "e": 1.0, "f": "\ud83d\ude00\u00e9", "a2": [], "d": 2}"#.utf8), file: "x.json")
        let o = try XCTUnwrap(v.objectValue)
        XCTAssertEqual(o["a"], .double(-.infinity))
        XCTAssertEqual(o["b"], .double(.infinity))
        XCTAssertTrue(o["c"]?.doubleValue?.isNaN ?? false)
        XCTAssertEqual(o["d"], .int(2), "a repeated key keeps the last value, as Python does")
        XCTAssertEqual(o["e"], .double(1))
        XCTAssertEqual(o["f"], .string("😀é"))
        let dpm = try SchedulerConfig(jsonData: Data(#"{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity}"#.utf8), source: "s.json")
        XCTAssertNoThrow(try Schedulers.make(config: dpm))
    }

    func testMalformedJSONNamesTheFileAndNeverCrashes() throws {
        let bad = ["", "{", "[1,]", "{\"a\" 1}", "01", "1.", "-", "\"abc", "\"\\x\"", "\"\\u12\"", "{\"a\":1}x", "tru", "[\"\u{01}\"]",
                   String(repeating: "[", count: 100_000), "{\"a\":" + String(repeating: "{\"a\":", count: 600) + "1" + String(repeating: "}", count: 601)]
        for text in bad {
            XCTAssertThrowsError(try JSONValue.parse(Data(text.utf8), file: "bad.json"), String(text.prefix(20))) { error in
                XCTAssertTrue("\(error)".contains("bad.json"), "\(error)")
            }
        }
        // Deep but within bounds is fine.
        XCTAssertNoThrow(try JSONValue.parse(Data((String(repeating: "[", count: 500) + String(repeating: "]", count: 500)).utf8), file: "ok.json"))
    }
}
