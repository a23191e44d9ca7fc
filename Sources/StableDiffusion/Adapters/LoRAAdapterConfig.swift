import Foundation

/// The PEFT `LoraConfig` diffusers stores in a LoRA file's safetensors metadata (`lora_adapter_metadata`,
/// keys prefixed `unet.` / `text_encoder.`): it fixes each layer's alpha, which the tensors alone do not.
struct LoRAAdapterConfig {
    var loraAlpha: Double?
    var alphaPattern: [String: Double] = [:]
    var useRSLoRA = false

    /// The configs per model in `metadata`, or an error naming the file when the JSON is unreadable
    /// or asks for something this engine does not do (DoRA).
    static func parse(_ metadata: [String: String], path: String) throws -> [LoRATarget: LoRAAdapterConfig] {
        guard let raw = metadata["lora_adapter_metadata"] else { return [:] }
        func bad(_ detail: String) -> PipelineError { .badModel(path: path, detail: "lora_adapter_metadata: \(detail)") }
        guard let json = try? JSONValue.parse(Data(raw.utf8), file: path).objectValue else { throw bad("not a JSON object") }
        var out: [LoRATarget: LoRAAdapterConfig] = [:]
        for (prefix, target) in [("unet.", LoRATarget.unet), ("text_encoder.", .textEncoder), ("text_encoder_2.", .textEncoder2)] {
            let entries = json.filter { $0.key.hasPrefix(prefix) }
            guard !entries.isEmpty else { continue }
            var c = LoRAAdapterConfig()
            c.loraAlpha = json[prefix + "lora_alpha"]?.doubleValue
            for (k, v) in json[prefix + "alpha_pattern"]?.objectValue ?? [:] {
                guard let a = v.doubleValue else { throw bad("\(prefix)alpha_pattern[\(k)] is not a number") }
                c.alphaPattern[k] = a
            }
            c.useRSLoRA = json[prefix + "use_rslora"]?.boolValue ?? false
            if json[prefix + "use_dora"]?.boolValue == true { throw bad("\(prefix)use_dora: DoRA is not supported") }
            out[target] = c
        }
        return out
    }

    /// PEFT's scaling for a layer of `rank`: `alpha / rank` (`alpha / sqrt(rank)` with rsLoRA), the alpha
    /// from the first pattern naming the module (a whole dotted suffix) or `lora_alpha`; nil when unset.
    func scaling(module: String, rank: Int) -> Float? {
        let pattern = alphaPattern.keys.sorted().first { module == $0 || module.hasSuffix("." + $0) }
        guard let alpha = pattern.flatMap({ alphaPattern[$0] }) ?? loraAlpha else { return nil }
        return Float(useRSLoRA ? alpha / Double(rank).squareRoot() : alpha / Double(rank))
    }
}
