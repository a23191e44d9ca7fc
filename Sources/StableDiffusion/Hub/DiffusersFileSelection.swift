import Foundation

/// Which files of a diffusers pipeline repo to fetch: the same set as diffusers 0.42's
/// `DiffusionPipeline.download(repo, variant=V, safety_checker=None, image_encoder=None)`
/// (pipeline_utils.py `download`, pipeline_loading_utils.py `variant_compatible_siblings` / `_get_ignore_patterns`).
/// - model folders: their `config.json` and one weight format — safetensors when every kept model folder has
///   safetensors (else `.bin` everywhere); the variant's files where a folder has them, else the plain ones;
///   sharded `*.index.json` with their shards;
/// - other component folders (tokenizer, scheduler, feature_extractor): everything in them;
/// - root: `model_index.json`, `config.json`, `scheduler_config.json`, `pipeline.py` and transformers' aux files.
/// Skipped: components set to null, and `skip` (the safety checker and image encoder, which this engine never runs),
/// flax `.msgpack`, ONNX, other variants, root checkpoints such as `v1-5-pruned.ckpt`.
enum DiffusersFileSelection {
    static let skippedComponents: Set<String> = ["safety_checker", "image_encoder"]

    private static let prefixes = "diffusion_pytorch_model|diffusion_pytorch_model|model|weights|pytorch_model|model"
    private static let suffixes = "bin|safetensors|onnx|pb|bin|safetensors"
    private static let shard = "\\d{5}-of-\\d{5}"
    private static let rootFiles: Set<String> = [
        "model_index.json", "config.json", "scheduler_config.json", "pipeline.py",
        "chat_template.jinja", "generation_config.json", "preprocessor_config.json", "processor_config.json",
        "tokenizer.json", "tokenizer_config.json",
    ]

    enum Failure: Error, Equatable { case noVariant(String), noSafetensors }

    /// - Parameters:
    ///   - files: the repo's files (`siblings[].rfilename`), `/`-separated.
    ///   - modelIndex: the parsed `model_index.json` object.
    static func select(files: [String], modelIndex: [String: JSONValue], variant: String?,
                       skip: Set<String> = skippedComponents) throws -> [String] {
        let ignored = Set(modelIndex["_ignore_files"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        let files = files.filter { !ignored.contains($0) }
        // Components diffusers would load: [library, class] pairs that are not null and not skipped.
        let folders = Set(modelIndex.compactMap { key, value -> String? in
            guard key != "_class_name", let pair = value.arrayValue, pair.count == 2, pair[0] != .null, pair[1] != .null,
                  !skip.contains(key) else { return nil }
            return key
        })
        let weightExtensions = ["bin", "safetensors", "onnx", "pb", "flashpack"]
        func dir(_ f: String) -> String { f.split(separator: "/").dropLast().joined(separator: "/") }
        let weightFiles = files.filter { f in weightExtensions.contains { f.hasSuffix($0) } && folders.contains(dir(f)) }
        let modelFolders = Set(weightFiles.map(dir))

        let useSafetensors = isSafetensorsCompatible(weightFiles, variant: variant)
        let ignoreExtensions = useSafetensors ? ["bin", "msgpack", "onnx", "pb"] : ["safetensors", "msgpack", "onnx", "pb"]
        let usable = try variantCompatible(files, variant: variant, ignoreExtensions: ignoreExtensions)

        func allowed(_ f: String) -> Bool {
            let parts = f.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            if parts.count == 2 && skip.contains(parts[0]) { return false }
            if usable.contains(f) || rootFiles.contains(f) { return true }
            if let top = parts.first, parts.count > 1, folders.contains(top), !modelFolders.contains(top) { return true }
            return parts.count == 2 && modelFolders.contains(parts[0]) && parts[1] == "config.json"
        }
        func isIgnored(_ f: String) -> Bool {
            ignoreExtensions.contains { ext in f.hasSuffix(".\(ext)") || (f.contains(".\(ext).index.") && f.hasSuffix("json")) }
        }
        return files.filter { allowed($0) && !isIgnored($0) }.sorted()
    }

    private static func regex(_ pattern: String) -> NSRegularExpression? { try? NSRegularExpression(pattern: "^(?:\(pattern))") }
    private static func matches(_ re: NSRegularExpression?, _ path: String) -> Bool {
        let name = String(path.split(separator: "/").last ?? "")
        return re?.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)) != nil
    }

    /// diffusers' `is_safetensors_compatible` over the kept model folders.
    static func isSafetensorsCompatible(_ weightFiles: [String], variant: String?) -> Bool {
        let v = variant.map(NSRegularExpression.escapedPattern(for:))
        let variantRE = v.map { regex("(\(prefixes))\\.(\($0)|\($0)-\(shard))\\.(\(suffixes))$") } ?? nil
        let plainRE = regex("(\(prefixes))(-\(shard))?\\.(\(suffixes))$")
        var byComponent: [String: [String]] = [:]
        for f in weightFiles where f.split(separator: "/").count == 2 { byComponent[String(f.split(separator: "/")[0]), default: []].append(f) }
        for (_, names) in byComponent {
            var chosen = variantRE.map { re in names.filter { matches(re, $0) } } ?? []
            if chosen.isEmpty { chosen = names.filter { matches(plainRE, $0) } }
            if !chosen.contains(where: { $0.hasSuffix(".safetensors") }) { return false }
        }
        return true
    }

    /// diffusers' `variant_compatible_siblings`: per component, the variant's weight and index files when it has
    /// any, else the plain ones.
    static func variantCompatible(_ files: [String], variant: String?, ignoreExtensions: [String]) throws -> Set<String> {
        let plainFile = regex("(\(prefixes))(-\(shard))?\\.(\(suffixes))$")
        let plainIndex = regex("(\(prefixes))\\.(\(suffixes))\\.index\\.json")
        let v = variant.map(NSRegularExpression.escapedPattern(for:)) ?? ""
        let variantFile = regex("(\(prefixes))\\.(\(v)|\(v)-\(shard))\\.(\(suffixes))$")
        let variantIndex = regex("(\(prefixes))\\.(\(suffixes))\\.index\\.\(v)\\.json$")
        let legacyFile = regex(".*-\(shard)\\.\(v)\\.[a-z]+$")
        let legacyIndex = regex("(\(prefixes))\\.(\(suffixes))\\.\(v)\\.index\\.json$")
        var groups: [String: [String]] = [:]
        for f in files {
            let parts = f.split(separator: "/", omittingEmptySubsequences: false)
            groups[parts.count == 2 ? String(parts[0]) : "", default: []].append(f)
        }
        var usable = Set<String>(), variantFiles = Set<String>()
        for (_, group) in groups {
            let names = group.filter { f in !ignoreExtensions.contains { f.hasSuffix($0) } }
            if variant != nil {
                let vf = names.filter { matches(variantFile, $0) }
                let lf = names.filter { matches(legacyFile, $0) }
                if !vf.isEmpty { variantFiles.formUnion(vf + names.filter { matches(variantIndex, $0) }); continue }
                if !lf.isEmpty { variantFiles.formUnion(lf + names.filter { matches(legacyIndex, $0) }); continue }
            }
            usable.formUnion(names.filter { matches(plainFile, $0) || matches(plainIndex, $0) })
        }
        if let variant, variantFiles.isEmpty { throw Failure.noVariant(variant) }
        return usable.union(variantFiles)
    }
}
