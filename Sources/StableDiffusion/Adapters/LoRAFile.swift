import Foundation
import DiffusionTensor

/// One low-rank pair from a LoRA file, before it is matched to a model weight.
struct LoRALayer {
    /// The model module as the file names it: kohya's underscored name (`down_blocks_0_..._to_q`) or a
    /// dotted diffusers name (`down_blocks.0....to_q`).
    var module: String
    var underscored: Bool
    /// The file's key of the down (A) matrix, for messages.
    var key: String
    var down: Tensor?
    var up: Tensor?
    var alpha: Float?
}

/// Reads a LoRA file in either common layout into per-module layers, for the UNet and the text encoder:
/// kohya / AUTOMATIC1111 (`lora_unet_<module>.lora_down.weight`, `.lora_up.weight`, `.alpha`, and
/// `lora_te_` for the text encoder) and diffusers / PEFT (`unet.<module>.lora_A.weight` / `lora_B.weight`,
/// `text_encoder.…`; also the older `.lora.down.weight`, `.lora_linear_layer.`, `processor.to_q_lora.`
/// spellings diffusers still reads). Any other key is an error naming it: silently dropping part of a
/// LoRA would give a different picture than diffusers.
struct LoRAFile {
    let path: String
    var layers: [LoRATarget: [String: LoRALayer]] = [:]
    /// diffusers' stored PEFT config per model, when the file has one.
    var adapterConfigs: [LoRATarget: LoRAAdapterConfig] = [:]

    init(path: String) throws {
        self.path = path
        let tensors = try Self.readTensors(path)
        if path.hasSuffix(".safetensors") {
            adapterConfigs = try LoRAAdapterConfig.parse(try SafeTensorsFile(path: path).metadata, path: path)
        }
        var unsupported: [String] = []
        for (key, tensor) in tensors.sorted(by: { $0.key < $1.key }) {
            guard let (target, module, underscored, role) = Self.classify(key) else { unsupported.append(key); continue }
            var layer = layers[target]?[module] ?? LoRALayer(module: module, underscored: underscored, key: key)
            switch role {
            case .down: layer.down = tensor; layer.key = key
            case .up: layer.up = tensor
            case .alpha:
                guard tensor.count == 1 else { throw bad("\(key) should hold one number, has shape \(tensor.shape)") }
                layer.alpha = tensor.scalars[0]
            }
            layers[target, default: [:]][module] = layer
        }
        guard unsupported.isEmpty else {
            throw bad("\(unsupported.count) key(s) are not LoRA weights this engine reads (kohya lora_down/lora_up/alpha or diffusers lora_A/lora_B for the UNet and text encoders; LoHa, LoKr and DoRA are not supported): \(Self.list(unsupported))")
        }
        for layer in layers.values.flatMap(\.values) {
            guard let down = layer.down, let up = layer.up else {
                throw bad("\(layer.key): the layer has \(layer.down == nil ? "no down (A)" : "no up (B)") matrix")
            }
            guard down.rank == 2 || down.rank == 4, up.rank == 2 || (up.rank == 4 && up.shape[2] == 1 && up.shape[3] == 1),
                  up.shape[1] == down.shape[0] else {
                throw bad("\(layer.key): down \(down.shape) and up \(up.shape) are not a low-rank pair")
            }
        }
        guard !layers.isEmpty else { throw bad("holds no LoRA layers") }
    }

    func bad(_ detail: String) -> PipelineError { .badModel(path: path, detail: detail) }

    static func list(_ keys: [String]) -> String { keys.prefix(8).joined(separator: ", ") + (keys.count > 8 ? ", ..." : "") }

    private static func readTensors(_ path: String) throws -> [String: Tensor] {
        guard FileManager.default.fileExists(atPath: path) else {
            throw PipelineError.badModel(path: path, detail: "LoRA file not found")
        }
        if path.hasSuffix(".safetensors") { return try SafeTensorsFile(path: path).allTensors() }
        return try TorchCheckpoint.loadStateDict(path: path)
    }

    enum Role { case down, up, alpha }

    private static let kohyaSuffixes: [(String, Role)] = [(".lora_down.weight", .down), (".lora_up.weight", .up), (".alpha", .alpha)]
    private static let diffusersSuffixes: [(String, Role)] = [
        (".lora_A.weight", .down), (".lora_B.weight", .up),
        (".lora.down.weight", .down), (".lora.up.weight", .up),
        (".lora_linear_layer.down.weight", .down), (".lora_linear_layer.up.weight", .up),
        ("_lora.down.weight", .down), ("_lora.up.weight", .up),
        (".alpha", .alpha),
    ]

    /// The target, module name and role of a key; nil when it is not a LoRA key this reader knows.
    static func classify(_ key: String) -> (LoRATarget, String, Bool, Role)? {
        for (prefix, target) in [("lora_unet_", LoRATarget.unet), ("lora_te_", .textEncoder), ("lora_te1_", .textEncoder), ("lora_te2_", .textEncoder2)]
        where key.hasPrefix(prefix) {
            for (suffix, role) in kohyaSuffixes where key.hasSuffix(suffix) {
                let module = key.dropFirst(prefix.count).dropLast(suffix.count)
                guard !module.contains(".") else { return nil }
                return (target, String(module), true, role)
            }
            return nil
        }
        if key.hasPrefix("lora_") { return nil }
        // Old diffusers files saved UNet layers without a prefix.
        var target = LoRATarget.unet
        var rest = Substring(key)
        if key.hasPrefix("unet.") { rest = rest.dropFirst(5) }
        else if key.hasPrefix("text_encoder.") { target = .textEncoder; rest = rest.dropFirst(13) }
        else if key.hasPrefix("text_encoder_2.") { target = .textEncoder2; rest = rest.dropFirst(15) }
        for (suffix, role) in diffusersSuffixes where rest.hasSuffix(suffix) {
            var module = String(rest.dropLast(suffix.count))
            if suffix.hasPrefix("_lora") { module = attentionProcessorModule(module, target) }
            return (target, module, false, role)
        }
        return nil
    }

    /// diffusers' attention-processor names: `attn1.processor.to_q` is `attn1.to_q`, `to_out` is
    /// `to_out.0`; in the text encoder `self_attn.to_q` is `self_attn.q_proj`, `to_out` is `out_proj`.
    private static func attentionProcessorModule(_ module: String, _ target: LoRATarget) -> String {
        var m = module.replacingOccurrences(of: ".processor.", with: ".")
        if target.isTextEncoder {
            for (from, to) in [("to_q", "q_proj"), ("to_k", "k_proj"), ("to_v", "v_proj"), ("to_out", "out_proj")] where m.hasSuffix("." + from) {
                m = String(m.dropLast(from.count)) + to
            }
        } else if m.hasSuffix(".to_out") {
            m += ".0"
        }
        return m
    }
}
