import Foundation
import DiffusionTensor

/// An original-layout (CompVis / Stability) checkpoint file opened lazily: `.safetensors` is memory-mapped,
/// a torch `.ckpt`/`.pt` keeps its tensors in the mapped zip. Which reader is used depends on the bytes,
/// and a file whose bytes contradict its extension is refused (a renamed file is usually a mistake).
public struct SingleFileCheckpoint: Sendable {
    public let url: URL
    /// Every tensor under its original name (`model.diffusion_model.*`, `first_stage_model.*`, ...).
    public let source: any TensorSource
    /// The training step torch checkpoints record; SD 2 512-base files say 875000 (see detection).
    public let globalStep: Int?

    public enum Format: String, Sendable { case safetensors, torch }

    /// Extensions accepted as single files.
    public static let fileExtensions: Set<String> = ["safetensors", "ckpt", "pt", "pth"]

    public init(url: URL) throws {
        self.url = url
        let path = url.path
        let format = try Self.sniff(path)
        let ext = url.pathExtension.lowercased()
        if ext == "safetensors", format != .safetensors {
            throw PipelineError.badModel(path: path, detail: "named .safetensors but holds a \(format.rawValue) (zip) archive; expected a safetensors file (rename it to .ckpt if it is a torch checkpoint)")
        }
        if ext != "safetensors", format == .safetensors {
            throw PipelineError.badModel(path: path, detail: "named .\(ext) but holds a safetensors file; expected a torch.save zip archive (rename it to .safetensors)")
        }
        switch format {
        case .safetensors:
            source = try SafeTensorsFile(path: path)
            globalStep = nil
        case .torch:
            // Training checkpoints' Lightning callback and numpy scalars are on the allow-list (inert); any
            // other global is refused, naming the file and the global.
            let root = try TorchCheckpoint.load(path: path)
            var step = root["global_step"]?.int
            var dict = root
            // Some files nest the weights more than once ("state_dict" inside "state_dict").
            var depth = 0
            while let inner = dict["state_dict"], inner.dictEntries != nil, depth < 8 {
                dict = inner
                step = step ?? dict["global_step"]?.int
                depth += 1
            }
            guard dict.dictEntries != nil else {
                throw PipelineError.badModel(path: path, detail: "holds no dict of tensors; expected a state dict (optionally under \"state_dict\")")
            }
            var tensors: [String: TorchTensor] = [:]
            for (k, v) in dict.dictEntries ?? [] {
                guard case .string(let name) = k, let t = v.tensor else { continue }
                tensors[name] = t
            }
            source = TorchTensorSource(tensors, description: path)
            globalStep = step
        }
    }

    /// The format the first bytes say: a zip signature is torch.save; a plausible little-endian header length
    /// followed by `{` is safetensors. Anything else (or too short) is an error naming the file.
    static func sniff(_ path: String) throws -> Format {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw PipelineError.badModel(path: path, detail: "cannot be opened for reading")
        }
        defer { try? handle.close() }
        let head = [UInt8]((try? handle.read(upToCount: 9)) ?? Data())
        // Safetensors first: its header length can begin with any byte, even 0x80 or "PK".
        if head.count == 9, head[8] == UInt8(ascii: "{") { return .safetensors }
        if head.count >= 4, head[0..<4].elementsEqual([0x50, 0x4B, 0x03, 0x04]) { return .torch }
        if head.first == 0x80 { return .torch }  // legacy pickle: TorchCheckpoint names the problem
        throw PipelineError.badModel(path: path, detail: "is neither a safetensors file nor a torch checkpoint (\(head.count) leading bytes unrecognised); expected a Stable Diffusion single-file checkpoint")
    }
}
