import Foundation

/// The configs of a diffusers model folder without its weights: either a folder the user names
/// (`--config DIR`, any diffusers folder) or one bundled with the library for single-file checkpoints.
public struct DiffusersConfigFolder: Sendable {
    public let root: URL
    /// vocab.json + merges.txt to use when the tokenizer folder has only its configs (bundled folders).
    let sharedBPE: URL?

    public init(root: URL) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root.path, isDirectory: &isDir), isDir.boolValue else {
            throw PipelineError.badModel(path: root.path, detail: "config folder does not exist (expected a diffusers model folder with model_index.json)")
        }
        self.root = root
        sharedBPE = nil
    }

    init(bundled root: URL, sharedBPE: URL) {
        self.root = root
        self.sharedBPE = sharedBPE
    }

    /// The bundled folder named `name` (e.g. `runwayml-stable-diffusion-v1-5`).
    public static func bundled(_ name: String) throws -> DiffusersConfigFolder {
        guard let base = Bundle.module.url(forResource: "SingleFileConfigs", withExtension: nil) else {
            throw PipelineError.badModel(path: Bundle.module.bundlePath, detail: "bundled SingleFileConfigs resource is missing (broken installation)")
        }
        let root = base.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: root.appendingPathComponent("model_index.json").path) else {
            throw PipelineError.badModel(path: root.path, detail: "no bundled configs for \(name)")
        }
        return DiffusersConfigFolder(bundled: root, sharedBPE: base.appendingPathComponent("clip-bpe"))
    }

    public func file(_ component: String, _ name: String) -> URL {
        root.appendingPathComponent(component).appendingPathComponent(name)
    }

    public var modelIndex: URL { root.appendingPathComponent("model_index.json") }
    public var unetConfig: URL { file("unet", "config.json") }
    public var vaeConfig: URL { file("vae", "config.json") }
    public var textEncoderConfig: URL { root.appendingPathComponent("text_encoder") }
    public var schedulerConfig: URL { file("scheduler", "scheduler_config.json") }
    public var lowResSchedulerConfig: URL { file("low_res_scheduler", "scheduler_config.json") }

    /// The tokenizer files: the folder's own, or its configs plus the shared CLIP BPE files.
    public func tokenizerFiles() throws -> TokenizerFiles {
        let dir = root.appendingPathComponent("tokenizer")
        guard let bpe = sharedBPE else { return try TokenizerFiles(directory: dir) }
        func existing(_ name: String) -> URL? {
            let url = dir.appendingPathComponent(name)
            return FileManager.default.fileExists(atPath: url.path) ? url : nil
        }
        return TokenizerFiles(vocab: bpe.appendingPathComponent("vocab.json"), merges: bpe.appendingPathComponent("merges.txt"),
                              tokenizerConfig: existing("tokenizer_config.json"), specialTokensMap: existing("special_tokens_map.json"))
    }
}
