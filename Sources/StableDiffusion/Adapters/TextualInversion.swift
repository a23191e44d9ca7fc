import Foundation
import DiffusionTensor

/// A textual-inversion embedding to add at load time, as diffusers' `load_textual_inversion(file, token=)`:
/// the token (and `token_1`, `token_2`, … for a multi-vector embedding) joins the tokenizer, the vectors
/// are appended to the text encoder's token-embedding table, and prompts naming the token are expanded.
///
/// Formats: AUTOMATIC1111 `.pt` (`string_to_param["*"]`, a dict or in early files a torch ParameterDict; token
/// default: its `name`) and `.safetensors` (`emb_params`, token default: the file name without extension),
/// diffusers `learned_embeds.safetensors` / `.bin` (`{token: vectors}`, token default: that key), and SDXL
/// embeddings (`clip_l` and `clip_g`, one set of vectors per text encoder; token default: the file name).
public struct TextualInversion: Sendable, Hashable {
    public var file: URL
    /// Overrides the token stored in the file.
    public var token: String?

    public init(file: URL, token: String? = nil) {
        self.file = file
        self.token = token
    }

    /// Parses the CLI form `FILE[:TOKEN]`: a trailing `:TOKEN` counts when the part before it is an existing file.
    public init(argument: String) {
        if let colon = argument.lastIndex(of: ":"), colon != argument.startIndex,
           FileManager.default.fileExists(atPath: String(argument[..<colon])), !FileManager.default.fileExists(atPath: argument) {
            self.init(file: URL(fileURLWithPath: String(argument[..<colon])), token: String(argument[argument.index(after: colon)...]))
        } else {
            self.init(file: URL(fileURLWithPath: argument))
        }
    }

    /// The token and its vectors (`[n, dim]`) as stored in the file.
    /// - Parameter part: for SDXL models, which encoder's vectors: `clip_l` (text_encoder) or `clip_g`
    ///   (text_encoder_2); nil for SD 1.x/2.x models.
    package func load(part: String? = nil) throws -> (token: String, vectors: Tensor) {
        let path = file.path
        func bad(_ detail: String) -> PipelineError { .badModel(path: path, detail: detail) }
        guard FileManager.default.fileExists(atPath: path) else { throw bad("embedding file not found") }
        let stem = file.deletingPathExtension().lastPathComponent
        var stored: (String, Tensor)
        if path.hasSuffix(".safetensors") {
            let f = try SafeTensorsFile(path: path)
            let isXL = f.tensorNames.contains("clip_l") && f.tensorNames.contains("clip_g")
            if let part {
                guard isXL else { throw bad("is an SD 1.x/2.x embedding; an SDXL model needs one with clip_l and clip_g vectors") }
                stored = (stem, try f.tensor(part))
            } else if isXL {
                throw bad("is an SDXL embedding (clip_l and clip_g); this is an SD 1.x/2.x model")
            } else if f.tensorNames.contains("emb_params") {
                stored = (stem, try f.tensor("emb_params"))
            } else if f.tensorNames.count == 1, let name = f.tensorNames.first {
                stored = (name, try f.tensor(name))
            } else {
                throw bad("expected one tensor {token: vectors} or \"emb_params\", found keys \(f.tensorNames.prefix(8).joined(separator: ", "))")
            }
        } else {
            if part != nil { throw bad("is an SD 1.x/2.x embedding; an SDXL model needs one with clip_l and clip_g vectors (.safetensors)") }
            // A pickle naming a global outside the allow-list (a code-execution payload) throws here.
            let root = try TorchCheckpoint.load(path: path)
            if let params = root["string_to_param"] {
                guard let t = params["*"]?.tensor else { throw bad("\"string_to_param\" has no \"*\" tensor") }
                stored = (root["name"]?.string ?? stem, try t.toTensor())
            } else if let t = root.tensor {
                stored = (stem, try t.toTensor())
            } else if let entries = root.dictEntries, entries.count == 1, case .string(let key) = entries[0].key, let t = entries[0].value.tensor {
                stored = (key, try t.toTensor())
            } else {
                throw bad("not a textual-inversion embedding: expected {token: vectors} or AUTOMATIC1111's \"string_to_param\"")
            }
        }
        var vectors = stored.1
        if vectors.rank == 1 { vectors = try vectors.reshaped([1, vectors.count]) }
        guard vectors.rank == 2, vectors.shape[0] >= 1 else {
            throw bad("embedding for \"\(stored.0)\" has shape \(vectors.shape); expected [vectors, dim]")
        }
        return (token ?? stored.0, vectors)
    }
}
