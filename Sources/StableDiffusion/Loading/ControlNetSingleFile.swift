import Foundation
import DiffusionTensor

/// Where each diffusers `ControlNetModel` module sits in an original `cldm.ControlNet` state dict
/// (`control_v11p_sd15_canny.pth`): the UNet's down half under the UNet's own names, plus the control image's
/// embedding (`input_hint_block`, convolutions at even indices), the zero convolutions (`zero_convs.i.0`) and
/// the mid block's (`middle_block_out.0`).
enum OriginalControlNetLayout {
    static func modules(_ config: ControlNetConfig) -> ModulePrefixMap {
        var m = ModulePrefixMap()
        OriginalUNetLayout.addDownHalf(&m, config.encoder)
        let steps = config.conditioningEmbeddingOutChannels.count - 1
        m.add("input_hint_block.0", "controlnet_cond_embedding.conv_in")
        for i in 0..<(2 * steps) { m.add("input_hint_block.\(2 * (i + 1))", "controlnet_cond_embedding.blocks.\(i)") }
        m.add("input_hint_block.\(2 * (2 * steps + 1))", "controlnet_cond_embedding.conv_out")
        let skips = 1 + config.encoder.layersPerBlock.reduce(0, +) + config.encoder.blockOutChannels.count - 1
        for i in 0..<skips { m.add("zero_convs.\(i).0", "controlnet_down_blocks.\(i)") }
        m.add("middle_block_out.0", "controlnet_mid_block")
        return m
    }
}

extension ControlNetModel {
    /// The prefix whole ControlNet checkpoints (ControlNet 1.0's `control_sd15_canny.pth`) keep the ControlNet
    /// under; v1.1 files and most shared ones have none.
    static let originalPrefix = "control_model."

    /// diffusers' `ControlNetModel.from_single_file` on an original-layout file: the bundled
    /// `control_v11p_sd15_canny` config (diffusers' default for every such file), adjusted to an SD 2.x
    /// ControlNet when the file's cross-attention width is 1024; or `config` (diffusers' `config=`).
    public convenience init(singleFile url: URL, config given: ControlNetConfig? = nil, precision: ComputePrecision = .fp32) throws {
        let checkpoint = try SingleFileCheckpoint(url: url)
        let source = checkpoint.source
        let names = source.tensorNames
        let prefix = names.contains { $0.hasPrefix(Self.originalPrefix) } ? Self.originalPrefix : ""
        guard source.shape(of: prefix + "input_hint_block.0.weight") != nil, source.shape(of: prefix + "zero_convs.0.0.weight") != nil else {
            throw PipelineError.badModel(path: url.path, detail: "has no \(prefix)input_hint_block.0.weight / \(prefix)zero_convs.0.0.weight: not a ControlNet in the original layout")
        }
        if source.shape(of: prefix + "label_emb.0.0.weight") != nil {
            throw PipelineError.badModel(path: url.path, detail: "is an SDXL ControlNet in the original layout, which diffusers does not convert either; use a diffusers ControlNet folder (e.g. diffusers/controlnet-canny-sdxl-1.0)")
        }
        let config = try given ?? Self.singleFileConfig(source, prefix: prefix, file: url.path)
        let modules = OriginalControlNetLayout.modules(config)
        var entries: [String: RenamedTensorSource.Entry] = [:]
        var unclaimed: [String] = []
        for name in names where name.hasPrefix(prefix) {
            guard let targets = modules.map(String(name.dropFirst(prefix.count))) else { unclaimed.append(name); continue }
            for (target, transform) in targets { entries[target] = .init(name, transform) }
        }
        guard unclaimed.isEmpty else {
            throw PipelineError.badModel(path: url.path, detail: "\(unclaimed.count) tensor(s) have no place in a ControlNet of this shape: \(unclaimed.prefix(8).joined(separator: ", "))\(unclaimed.count > 8 ? ", ..." : "")")
        }
        let weights = RenamedTensorSource(base: source, entries: entries, description: "\(url.path) (ControlNet, \(prefix)*)")
        try self.init(config: config, weights: weights, precision: precision)
    }

    /// The bundled SD 1.5 config, or its SD 2.x form (1024-wide text, 64-channel heads, linear projections).
    static func singleFileConfig(_ source: any TensorSource, prefix: String, file: String) throws -> ControlNetConfig {
        let url = try ControlNetConfig.bundledSD15URL()
        guard let data = FileManager.default.contents(atPath: url.path),
              var values = try JSONValue.parse(data, file: url.path).objectValue else {
            throw PipelineError.badModel(path: url.path, detail: "the bundled ControlNet config is missing or not a JSON object")
        }
        let key = prefix + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
        guard let toK = source.shape(of: key), toK.count == 2 else {
            throw PipelineError.badModel(path: file, detail: "has no \(key): cannot tell the ControlNet's text width")
        }
        switch toK[1] {
        case 768: break
        case 1024:
            values["cross_attention_dim"] = .int(1024)
            values["attention_head_dim"] = .array([5, 10, 20, 20].map { .int($0) })
            values["use_linear_projection"] = .bool(source.shape(of: prefix + "input_blocks.1.1.proj_in.weight")?.count == 2)
        default:
            throw PipelineError.badModel(path: file, detail: "\(key) is \(toK): a text width of \(toK[1]) is neither SD 1.x's 768 nor SD 2.x's 1024")
        }
        if let hint = source.shape(of: prefix + "input_hint_block.0.weight"), hint.count == 4 {
            values["conditioning_channels"] = .int(hint[1])
        }
        return try ControlNetConfig(ConfigReader(file: url.path, values: values))
    }
}

extension ControlNetConfig {
    /// The bundled `lllyasviel/control_v11p_sd15_canny` config (the SD 1.5 ControlNet architecture).
    public static func bundledSD15URL() throws -> URL {
        try DiffusersConfigFolder.bundledRoot().appendingPathComponent("lllyasviel-control_v11p_sd15_canny/config.json")
    }
}
