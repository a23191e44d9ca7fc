import Foundation
import XCTest
import StableDiffusion

/// The LoRA / embedding / prompt-weighting fixtures (Scripts/reference/gen_lora_fixtures.py).
enum AdapterFixtures {
    static var folder: URL { get throws { try FixturePaths.url("lora") } }

    static func file(_ name: String) throws -> URL { try folder.appendingPathComponent(name) }

    /// A picture case from cases.json: its options, model, adapters and diffusers' images.
    struct Case {
        let json: [String: JSONValue]
        let expected: [Tensor]

        init(_ name: String) throws {
            let data = try Data(contentsOf: try AdapterFixtures.file("cases.json"))
            guard let all = try JSONValue.parse(data, file: "cases.json").objectValue, let json = all[name]?.objectValue else {
                throw PipelineError.invalidArgument("no case \(name) in cases.json")
            }
            self.json = json
            let tensors = try SafeTensorsFile(path: try AdapterFixtures.file("expected/\(name).safetensors").path)
            var images: [Tensor] = []
            while tensors.info("image\(images.count)") != nil { images.append(try tensors.tensor("image\(images.count)")) }
            expected = images
            embeddings = tensors
        }

        let embeddings: SafeTensorsFile

        var model: URL { TinyModels.root.appendingPathComponent(json["model"]?.stringValue ?? "") }
        var prompt: String { json["prompt"]?.stringValue ?? "" }
        var negativePrompt: String { json["negative_prompt"]?.stringValue ?? "" }
        var seed: UInt64 { UInt64(json["seed"]?.intValue ?? 0) }

        var options: GenerationOptions {
            var o = GenerationOptions(prompt: prompt, negativePrompt: negativePrompt)
            o.height = json["height"]?.intValue
            o.width = json["width"]?.intValue
            o.numInferenceSteps = json["num_inference_steps"]?.intValue ?? 50
            o.guidanceScale = Float(json["guidance_scale"]?.doubleValue ?? 7.5)
            o.seed = seed
            o.clipSkip = json["clip_skip"]?.intValue
            if json["prompt_syntax"]?.stringValue == "a1111" { o.promptSyntax = .a1111 }
            return o
        }

        var adapters: ModelAdapters {
            get throws {
                let loras = try (json["loras"]?.arrayValue ?? []).map { entry in
                    LoRA(file: try AdapterFixtures.file(entry.objectValue?["file"]?.stringValue ?? ""),
                         scale: Float(entry.objectValue?["scale"]?.doubleValue ?? 1))
                }
                let embeddings = try (json["embeddings"]?.arrayValue ?? []).map { entry in
                    TextualInversion(file: try AdapterFixtures.file(entry.objectValue?["file"]?.stringValue ?? ""),
                                     token: entry.objectValue?["token"]?.stringValue)
                }
                return ModelAdapters(loras: loras, embeddings: embeddings)
            }
        }

        /// Runs the case through the library and compares pictures (and prompt embeddings when stored).
        func check(file: StaticString = #filePath, line: UInt = #line) throws {
            let pipe = try StableDiffusionPipeline(modelDirectory: model, adapters: try adapters)
            if embeddings.info("prompt_embeds") != nil {
                let expected = try Tensor.concatenate([embeddings.tensor("negative_prompt_embeds"), embeddings.tensor("prompt_embeds")], axis: 0)
                assertClose(try pipe.components.encodePrompt(options), expected, tolerance: 1e-4, "prompt embeddings", file: file, line: line)
            }
            assertImagesMatch(try pipe(options), expected, file: file, line: line)
        }
    }
}
