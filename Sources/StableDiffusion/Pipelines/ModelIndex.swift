import Foundation

/// A pipeline folder's `model_index.json`: which pipeline class it is and which components it has.
public struct ModelIndex: Sendable, Equatable {
    /// e.g. `StableDiffusionPipeline`, `StableDiffusionInpaintPipeline`.
    public let pipelineClass: String
    /// Component name -> (library, class), e.g. `unet` -> (`diffusers`, `UNet2DConditionModel`).
    /// Components saved as `[null, null]` (a disabled safety checker) are absent.
    public let components: [String: (library: String, className: String)]
    /// Extra scalar settings such as `requires_safety_checker` or the upscaler's `max_noise_level`.
    public let settings: [String: JSONValue]

    public static func == (a: ModelIndex, b: ModelIndex) -> Bool {
        a.pipelineClass == b.pipelineClass && a.settings == b.settings
            && a.components.mapValues { [$0.library, $0.className] } == b.components.mapValues { [$0.library, $0.className] }
    }

    public init(pipelineClass: String, components: [String: (library: String, className: String)], settings: [String: JSONValue] = [:]) {
        self.pipelineClass = pipelineClass
        self.components = components
        self.settings = settings
    }

    public init(contentsOf url: URL) throws {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw PipelineError.badModel(path: url.path, detail: "cannot read model_index.json (is this a diffusers model folder?)")
        }
        let json: JSONValue
        do { json = try JSONValue.parse(data, file: url.path) } catch {
            throw PipelineError.badModel(path: url.path, detail: "malformed JSON")
        }
        guard let object = json.objectValue else { throw PipelineError.badModel(path: url.path, detail: "top level is not a JSON object") }
        guard let cls = object["_class_name"]?.stringValue else {
            throw PipelineError.badModel(path: url.path, detail: "key \"_class_name\" is missing or not a string")
        }
        pipelineClass = cls
        var comps: [String: (library: String, className: String)] = [:]
        var settings: [String: JSONValue] = [:]
        for (key, value) in object where !key.hasPrefix("_") {
            if let pair = value.arrayValue, pair.count == 2 {
                if pair[0] == .null || pair[1] == .null { continue }
                guard let lib = pair[0].stringValue, let name = pair[1].stringValue else {
                    throw PipelineError.badModel(path: url.path, detail: "component \"\(key)\" must be [library, class]")
                }
                comps[key] = (lib, name)
            } else {
                settings[key] = value
            }
        }
        components = comps
        self.settings = settings
    }
}
