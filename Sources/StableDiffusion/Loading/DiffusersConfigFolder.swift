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
        let base = try bundledRoot()
        let root = base.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: root.appendingPathComponent("model_index.json").path) else {
            throw PipelineError.badModel(path: root.path, detail: "no bundled configs for \(name)")
        }
        return DiffusersConfigFolder(bundled: root, sharedBPE: base.appendingPathComponent("clip-bpe"))
    }

    /// The SingleFileConfigs resource folder. On Linux SwiftPM's `Bundle.module` calls fatalError when its
    /// bundle is gone (e.g. a copied `sd` binary), so the places it looks are checked here first and a missing
    /// bundle is a thrown error instead.
    static func bundledRoot() throws -> URL {
        #if os(Linux)
        let bundleName = "StableDiffusion_StableDiffusion.resources"
        guard let url = ResourceBundles.linuxFolder(bundle: bundleName, resource: "SingleFileConfigs") else {
            throw PipelineError.badModel(path: Bundle.main.bundleURL.appendingPathComponent(bundleName).path,
                                         detail: "the bundled configs for single-file checkpoints are missing (keep \(bundleName) next to the sd binary, or pass a config folder)")
        }
        return url
        #else
        guard let url = Bundle.module.url(forResource: "SingleFileConfigs", withExtension: nil), FileManager.default.fileExists(atPath: url.path) else {
            throw PipelineError.badModel(path: Bundle.module.bundlePath, detail: "the bundled configs for single-file checkpoints are missing")
        }
        return url
        #endif
    }

    public func file(_ component: String, _ name: String) -> URL {
        root.appendingPathComponent(component).appendingPathComponent(name)
    }

    public var modelIndex: URL { root.appendingPathComponent("model_index.json") }
    public var unetConfig: URL { file("unet", "config.json") }
    public var vaeConfig: URL { file("vae", "config.json") }
    public var textEncoderConfig: URL { root.appendingPathComponent("text_encoder") }
    /// A text encoder's config folder by component (`text_encoder`, SDXL's `text_encoder_2`).
    public func textEncoderConfig(_ component: String) -> URL { root.appendingPathComponent(component) }
    public var schedulerConfig: URL { file("scheduler", "scheduler_config.json") }
    public var lowResSchedulerConfig: URL { file("low_res_scheduler", "scheduler_config.json") }

    /// The tokenizer files: the folder's own, or its configs plus the shared CLIP BPE files (SDXL's two
    /// tokenizers share that vocabulary; `tokenizer_2`'s config pads with "!").
    public func tokenizerFiles(_ component: String = "tokenizer") throws -> TokenizerFiles {
        let dir = root.appendingPathComponent(component)
        guard let bpe = sharedBPE else { return try TokenizerFiles(directory: dir) }
        func existing(_ name: String) -> URL? {
            let url = dir.appendingPathComponent(name)
            return FileManager.default.fileExists(atPath: url.path) ? url : nil
        }
        return TokenizerFiles(vocab: bpe.appendingPathComponent("vocab.json"), merges: bpe.appendingPathComponent("merges.txt"),
                              tokenizerConfig: existing("tokenizer_config.json"), specialTokensMap: existing("special_tokens_map.json"))
    }
}
