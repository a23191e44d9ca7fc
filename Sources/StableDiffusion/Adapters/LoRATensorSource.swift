import DiffusionTensor

/// Serves a model's base weights with LoRA deltas added (`W + Σ scale·up@down`), so a model built from it
/// holds the merged weights. The base source is never changed: building again from it (or from a source
/// with other LoRAs) gives the unmerged or differently merged model, which is how LoRA sets are switched.
struct LoRATensorSource: TensorSource {
    let base: any TensorSource
    /// Per base weight name, the low-rank pairs and their scales (alpha/rank times the user's scale).
    let deltas: [String: [(up: Tensor, down: Tensor, scale: Float)]]

    /// Matches every layer of `files` for `target` to a weight of `base`; an unknown module or a shape
    /// that does not fit is an error naming the file and key.
    /// - Parameter unetConfig: the UNet's config, so kohya's SDXL files, which name UNet modules as the
    ///   original (SGM) model does (`input_blocks_4_1_...`), find them too.
    init(base: any TensorSource, target: LoRATarget, files: [(file: LoRAFile, scale: Float)], unetConfig: UNet2DConditionConfig? = nil) throws {
        self.base = base
        var names = Self.moduleNames(base, target)
        if target == .unet, let unetConfig { Self.addOriginalNames(&names.underscored, unetConfig) }
        var deltas: [String: [(up: Tensor, down: Tensor, scale: Float)]] = [:]
        for (file, userScale) in files {
            guard let layers = file.layers[target] else { continue }
            var unknown: [String] = []
            let alphas = layers.values.compactMap(\.alpha)
            // diffusers/PEFT: modules without an alpha take the most common alpha of the file's layers
            // for this model when any has one; with none, alpha = rank (scale 1).
            let commonAlpha = Self.mostCommon(alphas)
            for layer in layers.values.sorted(by: { $0.key < $1.key }) {
                guard let weightName = (layer.underscored ? names.underscored : names.dotted)[Self.canonical(layer, target)] else {
                    unknown.append(layer.key); continue
                }
                guard let down = layer.down, let up = layer.up, let shape = base.shape(of: weightName) else { continue }
                let rank = down.shape[0], out = up.shape[0]
                let inner = down.count / rank
                guard shape.first == out, shape.reduce(1, *) == out * inner else {
                    throw file.bad("\(layer.key) (down \(down.shape), up \(up.shape)) does not fit the \(target.rawValue)'s \(weightName) \(shape): the LoRA was made for another architecture (SD 1.x and SD 2.x LoRAs are not interchangeable)")
                }
                // A stored PEFT config decides for diffusers-layout files; kohya files carry their alphas.
                let scaling = layer.alpha.map { $0 / Float(rank) }
                    ?? file.adapterConfigs[target]?.scaling(module: layer.module, rank: rank)
                    ?? (commonAlpha ?? Float(rank)) / Float(rank)
                deltas[weightName, default: []].append((
                    try up.reshaped([out, rank]), try down.reshaped([rank, inner]), userScale * scaling))
            }
            guard unknown.isEmpty else {
                throw file.bad("\(unknown.count) key(s) name no layer of the \(target.rawValue) (a LoRA for another model family? SD 1.x/2.x and SDXL LoRAs are not interchangeable): \(LoRAFile.list(unknown))")
            }
        }
        self.deltas = deltas
    }

    var tensorNames: [String] { base.tensorNames }
    var sourceDescription: String { base.sourceDescription }
    func shape(of name: String) -> [Int]? { base.shape(of: name) }

    func tensor(_ name: String) throws -> Tensor {
        let w = try base.tensor(name)
        guard let pairs = deltas[name] else { return w }
        var merged = try w.reshaped([w.shape[0], w.count / w.shape[0]])
        for pair in pairs {
            merged = try merged + (try pair.up.matmul(pair.down)) * pair.scale
        }
        return try merged.reshaped(w.shape)
    }

    /// The base's weight names by module, dotted (`a.b.0.c`) and underscored as kohya writes them
    /// (`a_b_0_c`). Text-encoder names are keyed with the `text_model.` prefix whether or not the file has it.
    private static func moduleNames(_ base: any TensorSource, _ target: LoRATarget) -> (dotted: [String: String], underscored: [String: String]) {
        var dotted: [String: String] = [:], underscored: [String: String] = [:]
        for name in base.tensorNames where name.hasSuffix(".weight") {
            var module = String(name.dropLast(".weight".count))
            if target.isTextEncoder, !module.hasPrefix("text_model.") { module = "text_model." + module }
            dotted[module] = name
            underscored[module.replacingOccurrences(of: ".", with: "_")] = name
        }
        return (dotted, underscored)
    }

    /// The layer's module name with the text encoder's `text_model.` prefix, which files saved with
    /// transformers 5 leave out.
    private static func canonical(_ layer: LoRALayer, _ target: LoRATarget) -> String {
        let prefix = layer.underscored ? "text_model_" : "text_model."
        return target.isTextEncoder && !layer.module.hasPrefix(prefix) ? prefix + layer.module : layer.module
    }

    /// kohya's original-layout UNet names, underscored, for every module the diffusers names list.
    private static func addOriginalNames(_ underscored: inout [String: String], _ config: UNet2DConditionConfig) {
        let layout = OriginalUNetLayout.modules(config)
        var added: [String: String] = [:]
        for weight in underscored.values {
            let module = String(weight.dropLast(".weight".count))
            guard let original = layout.original(of: module) else { continue }
            let key = original.replacingOccurrences(of: ".", with: "_")
            if underscored[key] == nil { added[key] = weight }
        }
        underscored.merge(added) { a, _ in a }
    }

    /// The value occurring most often, the first seen winning ties (Python's `Counter.most_common`).
    private static func mostCommon(_ values: [Float]) -> Float? {
        var counts: [Float: Int] = [:], order: [Float] = []
        for v in values {
            if counts[v] == nil { order.append(v) }
            counts[v, default: 0] += 1
        }
        return order.max { counts[$0, default: 0] < counts[$1, default: 0] }
    }
}
