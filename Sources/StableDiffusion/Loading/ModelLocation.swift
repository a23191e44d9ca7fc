import Foundation

/// What a `--model` string names. The one place that decides, so every front end (CLI, server, apps)
/// treats model strings alike.
public enum ModelLocation: Sendable, Equatable {
    /// A diffusers folder with `model_index.json`.
    case folder(URL)
    /// An original-layout single-file checkpoint (`.safetensors`, `.ckpt`, `.pt`, `.pth`).
    case singleFile(URL)
    /// A Hugging Face Hub repository (`owner/name[@revision]`), loaded through the huggingface_hub cache.
    case hubRepository(HubRepoID)

    /// Decides by what is on disk: an existing folder is a diffusers folder, an existing file with a
    /// checkpoint extension is a single file; a string naming nothing on disk that has the form of a Hub
    /// repo id is one (as diffusers' `from_pretrained` decides). Throws, naming the string, for anything else.
    public static func classify(_ string: String) throws -> ModelLocation {
        let url = URL(fileURLWithPath: string)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            if let repo = try? HubRepoID(string) { return .hubRepository(repo) }
            throw PipelineError.badModel(path: string, detail: "does not exist (expected a diffusers model folder, a .safetensors/.ckpt file or a Hub repo id owner/name[@revision])")
        }
        if isDir.boolValue { return .folder(URL(fileURLWithPath: string, isDirectory: true)) }
        guard SingleFileCheckpoint.fileExtensions.contains(url.pathExtension.lowercased()) else {
            throw PipelineError.badModel(path: string, detail: "is not a folder or a single-file checkpoint (expected a diffusers model folder, or a file ending in \(SingleFileCheckpoint.fileExtensions.sorted().map { "." + $0 }.joined(separator: ", ")))")
        }
        return .singleFile(url)
    }

    /// The local file or folder; nil for a Hub repository (its snapshot folder is known once fetched).
    public var url: URL? {
        switch self {
        case .folder(let u), .singleFile(let u): return u
        case .hubRepository: return nil
        }
    }
}

extension StableDiffusionComponents {
    /// Loads whatever `location` names. `configDirectory` and `predictionType` apply to single files only
    /// (a folder's own configs rule; passing them with a folder is an error), `variant` to folders only.
    /// `hubProgress` reports downloads when a Hub repository's files are missing from the cache.
    /// `precision` is checked against the CPU before anything is read or downloaded.
    public convenience init(location: ModelLocation, variant: String? = nil, configDirectory: URL? = nil,
                            predictionType: String? = nil, includeVAEEncoder: Bool = true,
                            adapters: ModelAdapters = ModelAdapters(), hubProgress: HubProgressHandler? = nil,
                            precision: ComputePrecision = .fp32) throws {
        try precision.checkSupported()
        switch location {
        case .hubRepository(let repo):
            guard configDirectory == nil, predictionType == nil else {
                throw PipelineError.invalidArgument("a config folder and prediction type apply to single-file checkpoints, not to the Hub repository \(repo)")
            }
            let folder = try HubClient().snapshot(repo, variant: variant, progress: hubProgress)
            try self.init(directory: folder, variant: variant, includeVAEEncoder: includeVAEEncoder, adapters: adapters,
                          precision: precision)
        case .folder(let dir):
            guard configDirectory == nil, predictionType == nil else {
                throw PipelineError.invalidArgument("a config folder and prediction type apply to single-file checkpoints, not to the folder \(dir.path)")
            }
            try self.init(directory: dir, variant: variant, includeVAEEncoder: includeVAEEncoder, adapters: adapters,
                          precision: precision)
        case .singleFile(let file):
            guard variant == nil else {
                throw PipelineError.invalidArgument("a weights variant applies to diffusers folders, not to the single file \(file.path)")
            }
            try self.init(singleFile: file, configDirectory: configDirectory, predictionType: predictionType,
                          includeVAEEncoder: includeVAEEncoder, adapters: adapters, precision: precision)
        }
    }
}
