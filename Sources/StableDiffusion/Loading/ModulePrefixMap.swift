import Foundation

/// Renames tensors module by module: an original module prefix (`input_blocks.4.1`) becomes a diffusers
/// one (`down_blocks.1.attentions.0`), and the parameter path inside the module is renamed by the module's
/// kind. Mapping whole modules, not single parameters, keeps the tables short and independent of how many
/// transformer layers or heads a block has.
struct ModulePrefixMap {
    enum Kind {
        /// Parameter paths unchanged (transformer blocks, plain convs and linears).
        case plain
        /// An LDM UNet ResBlock (`in_layers.0` ...) to a diffusers ResnetBlock2D.
        case unetResnet
        /// A UNet downsampler: `op` to `conv`.
        case unetDownsampler
        /// A VAE ResnetBlock: `nin_shortcut` to `conv_shortcut`.
        case vaeResnet
        /// The VAE's mid-block AttnBlock: 1x1 conv q/k/v/proj_out to linear to_q/to_k/to_v/to_out.0.
        case vaeAttention
        /// An OpenCLIP residual attention block to a transformers CLIPEncoderLayer.
        case openCLIPLayer
    }

    private var modules: [String: (target: String, kind: Kind)] = [:]
    private var longestDepth = 0

    mutating func add(_ original: String, _ diffusers: String, _ kind: Kind = .plain) {
        modules[original] = (diffusers, kind)
        longestDepth = max(longestDepth, original.split(separator: ".").count)
    }

    /// The diffusers name(s) of one original parameter name (relative to the component prefix), or nil
    /// when no module claims it. OpenCLIP's fused in_proj yields three entries.
    func map(_ name: String) -> [(String, TensorTransform)]? {
        let parts = name.split(separator: ".").map(String.init)
        for depth in stride(from: min(longestDepth, parts.count - 1), through: 1, by: -1) {
            let prefix = parts[..<depth].joined(separator: ".")
            guard let (target, kind) = modules[prefix] else { continue }
            let rest = parts[depth...].joined(separator: ".")
            return Self.rename(rest, kind).map { (target + "." + $0.0, $0.1) }
        }
        return nil
    }

    /// The original module name of a diffusers module (the inverse of `map` for the UNet's kinds), e.g.
    /// `down_blocks.1.resnets.0.conv1` to `input_blocks.4.0.in_layers.2`: kohya's SDXL LoRAs name the
    /// UNet's modules this way. nil when no module claims it or its kind has no plain inverse.
    func original(of diffusersModule: String) -> String? {
        var best: (original: String, target: String, kind: Kind)?
        for (original, (target, kind)) in modules where diffusersModule == target || diffusersModule.hasPrefix(target + ".") {
            if best == nil || target.count > best!.target.count { best = (original, target, kind) }
        }
        guard let best else { return nil }
        let rest = String(diffusersModule.dropFirst(best.target.count)).drop { $0 == "." }
        func back(_ table: [(String, String)]) -> String {
            for (new, old) in table where rest == old || rest.hasPrefix(old + ".") { return new + rest.dropFirst(old.count) }
            return String(rest)
        }
        let renamed: String
        switch best.kind {
        case .plain: renamed = String(rest)
        case .unetResnet: renamed = back(Self.unetResnetNames)
        case .unetDownsampler: renamed = back(Self.unetDownsamplerNames)
        default: return nil
        }
        return renamed.isEmpty ? best.original : best.original + "." + renamed
    }

    /// Original to diffusers parameter-path heads, for the kinds `original(of:)` also reads backwards.
    private static let unetResnetNames = [("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("emb_layers.1", "time_emb_proj"),
                                          ("out_layers.0", "norm2"), ("out_layers.3", "conv2"), ("skip_connection", "conv_shortcut")]
    private static let unetDownsamplerNames = [("op", "conv")]

    private static func rename(_ rest: String, _ kind: Kind) -> [(String, TensorTransform)] {
        func replacingHead(_ table: [(String, String)]) -> String {
            for (old, new) in table where rest == old || rest.hasPrefix(old + ".") {
                return new + rest.dropFirst(old.count)
            }
            return rest
        }
        switch kind {
        case .plain: return [(rest, .identity)]
        case .unetResnet:
            return [(replacingHead(unetResnetNames), .identity)]
        case .unetDownsampler: return [(replacingHead(unetDownsamplerNames), .identity)]
        case .vaeResnet: return [(replacingHead([("nin_shortcut", "conv_shortcut")]), .identity)]
        case .vaeAttention:
            let renamed = replacingHead([("norm", "group_norm"), ("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("proj_out", "to_out.0")])
            return [(renamed, renamed.hasPrefix("group_norm") ? .identity : .dropTrailingUnitDims)]
        case .openCLIPLayer:
            switch rest {
            case "attn.in_proj_weight", "attn.in_proj_bias":
                let suffix = rest.hasSuffix("weight") ? "weight" : "bias"
                return ["q_proj", "k_proj", "v_proj"].enumerated().map { ("self_attn.\($0.element).\(suffix)", .rowBlock(index: $0.offset, parts: 3)) }
            default:
                return [(replacingHead([("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"),
                                        ("mlp.c_proj", "mlp.fc2"), ("attn.out_proj", "self_attn.out_proj")]), .identity)]
            }
        }
    }
}
