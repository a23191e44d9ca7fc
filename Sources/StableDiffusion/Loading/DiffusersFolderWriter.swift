import Foundation
import DiffusionTensor

/// Writes a single-file checkpoint out as a diffusers folder (what `save_pretrained` makes): configs,
/// tokenizer files, `model_index.json` and safetensors weights, so both this library's folder loader and
/// diffusers' `from_pretrained` read it.
public enum DiffusersFolderWriter {
    /// - Parameter directory: must not exist yet, or be empty. On failure nothing is left behind.
    public static func write(_ model: SingleFileModel, to directory: URL) throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: directory.path) {
            let contents = (try? fm.contentsOfDirectory(atPath: directory.path)) ?? ["?"]
            guard contents.isEmpty else { throw PipelineError.badModel(path: directory.path, detail: "output folder exists and is not empty") }
        }
        let created = !fm.fileExists(atPath: directory.path)
        do {
            try writeAll(model, to: directory)
        } catch {
            if created { try? fm.removeItem(at: directory) } else {
                for item in (try? fm.contentsOfDirectory(atPath: directory.path)) ?? [] {
                    try? fm.removeItem(at: directory.appendingPathComponent(item))
                }
            }
            throw error
        }
    }

    private static func writeAll(_ model: SingleFileModel, to directory: URL) throws {
        let configs = model.configs
        let fm = FileManager.default
        func dir(_ name: String) throws -> URL {
            let url = directory.appendingPathComponent(name)
            try fm.createDirectory(at: url, withIntermediateDirectories: true)
            return url
        }
        // Configs first: the weights are shaped by them, and a config problem should fail before the big writes.
        let unetConfig = try UNet2DConditionConfig.load(configs.unetConfig)
        let vaeConfig = try AutoencoderKLConfig.load(configs.vaeConfig)
        let encoders = model.converter.layout.textEncoders
        let textConfigs = try encoders.map { try CLIPTextConfig.load(from: configs.textEncoderConfig($0.component)) }
        try copy(configs.unetConfig, to: dir("unet").appendingPathComponent("config.json"))
        try copy(configs.vaeConfig, to: dir("vae").appendingPathComponent("config.json"))
        for e in encoders {
            try copy(configs.textEncoderConfig(e.component).appendingPathComponent("config.json"), to: dir(e.component).appendingPathComponent("config.json"))
        }
        try writeJSON(model.schedulerConfig.values.mapValues(plain), to: dir("scheduler").appendingPathComponent("scheduler_config.json"))
        if model.lowResSchedulerConfig != nil {
            try copy(configs.lowResSchedulerConfig, to: dir("low_res_scheduler").appendingPathComponent("scheduler_config.json"))
        }
        for e in encoders {
            let tok = try configs.tokenizerFiles(e.tokenizerComponent)
            let tokDir = try dir(e.tokenizerComponent)
            for file in [tok.tokenizerJSON, tok.vocab, tok.merges, tok.tokenizerConfig, tok.specialTokensMap].compactMap({ $0 }) {
                try copy(file, to: tokDir.appendingPathComponent(file.lastPathComponent))
            }
        }
        try writeModelIndex(from: configs.modelIndex, to: directory.appendingPathComponent("model_index.json"))

        let convert = model.converter
        try writeWeights(convert.unet(unetConfig), to: dir("unet").appendingPathComponent("diffusion_pytorch_model.safetensors"))
        try writeWeights(convert.vae(vaeConfig), to: dir("vae").appendingPathComponent("diffusion_pytorch_model.safetensors"))
        // transformers 5 saves CLIPTextModel without the `text_model.` level (CLIPTextModelWithProjection keeps
        // it, beside `text_projection`); the position_ids buffer is not saved.
        for (e, textConfig) in zip(encoders, textConfigs) {
            let strip = e.hasProjection ? "" : "text_model."
            try writeWeights(convert.textEncoder(textConfig, e), to: dir(e.component).appendingPathComponent("model.safetensors"),
                             rename: { $0.hasSuffix("position_ids") ? nil : String($0.dropFirst(!strip.isEmpty && $0.hasPrefix(strip) ? strip.count : 0)) })
        }
    }

    /// fp16 tensors stay fp16 (exact); everything else is written as fp32, so nothing is rounded.
    private static func writeWeights(_ source: RenamedTensorSource, to url: URL, rename: (String) -> String? = { $0 }) throws {
        var entries: [SafeTensorsWriter.Entry] = []
        for name in source.tensorNames {
            guard let target = rename(name), let entry = source.entries[name] else { continue }
            entries.append((target, try source.tensor(name), isHalf(source.base, entry.sourceName) ? .float16 : .float32))
        }
        try SafeTensorsWriter.write(entries, metadata: ["format": "pt"], to: url.path)
    }

    private static func isHalf(_ base: any TensorSource, _ name: String) -> Bool {
        if let st = base as? SafeTensorsFile { return st.info(name)?.scalarType == .float16 }
        if let torch = base as? TorchTensorSource { return torch.tensors[name]?.scalarType == .float16 }
        return false
    }

    /// The pipeline's model_index.json without the parts a single file does not carry (safety checker,
    /// feature extractor, depth estimator, image encoder).
    private static func writeModelIndex(from url: URL, to target: URL) throws {
        let data = try Data(contentsOf: url)
        guard var index = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw PipelineError.badModel(path: url.path, detail: "top level is not a JSON object")
        }
        for key in ["safety_checker", "feature_extractor", "depth_estimator", "image_encoder"] where index[key] != nil {
            index[key] = [NSNull(), NSNull()]
        }
        if index["requires_safety_checker"] != nil { index["requires_safety_checker"] = false }
        try writeJSON(index, to: target)
    }

    private static func plain(_ v: JSONValue) -> Any {
        switch v {
        case .null: return NSNull()
        case .bool(let b): return b
        case .int(let i): return i
        case .double(let d): return d
        case .string(let s): return s
        case .array(let a): return a.map(plain)
        case .object(let o): return o.mapValues(plain)
        }
    }

    private static func writeJSON(_ object: Any, to url: URL) throws {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: url)
    }

    private static func copy(_ source: URL, to target: URL) throws {
        guard FileManager.default.fileExists(atPath: source.path) else {
            throw PipelineError.badModel(path: source.path, detail: "config file is missing")
        }
        try FileManager.default.copyItem(at: source, to: target)
    }
}
