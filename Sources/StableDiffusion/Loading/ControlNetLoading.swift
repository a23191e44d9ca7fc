import Foundation
import DiffusionTensor

extension ControlNetModel {
    /// What a `--controlnet` argument (or a server's `--controlnet`) names: a diffusers ControlNet folder, a
    /// single file in the original layout (`control_v11p_sd15_canny.pth` / `.safetensors`, as
    /// `ControlNetModel.from_single_file`), or a Hub repo id (`lllyasviel/control_v11p_sd15_canny`) fetched into
    /// the Hugging Face cache as `from_pretrained` does.
    public static func load(_ argument: String, variant: String? = nil, precision: ComputePrecision = .fp32,
                            progress: HubProgressHandler? = nil) throws -> ControlNetModel {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: argument, isDirectory: &isDir) {
            let url = URL(fileURLWithPath: argument)
            if isDir.boolValue { return try ControlNetModel(directory: url, variant: variant, precision: precision.forModel(.unet)) }
            return try ControlNetModel(singleFile: url, precision: precision.forModel(.unet))
        }
        guard let repo = try HubRepoID.parseUnlessLocal(argument) else {
            throw PipelineError.badModel(path: argument, detail: "is not a ControlNet folder or file, nor a Hub repo id (owner/name[@revision])")
        }
        let folder = try HubClient().modelSnapshot(repo: repo.id, revision: repo.revision ?? "main", variant: variant, progress: progress)
        return try ControlNetModel(directory: folder, variant: variant, precision: precision.forModel(.unet))
    }
}
