import Foundation
import DiffusionTensor

/// Finds and opens a component's weights as diffusers' `from_pretrained` does: `.safetensors` (single, or
/// sharded with an index) before a torch `.bin`; with a variant (e.g. `fp16`) the variant's files
/// (`name.fp16.safetensors`, `name.safetensors.index.fp16.json`, or the legacy `name.fp16.safetensors.index.json`),
/// falling back to the plain files for a component that has no variant files, as diffusers does.
enum WeightFiles {
    /// - Parameter stem: `diffusion_pytorch_model` (diffusers) or `model` / `pytorch_model` (transformers).
    static func open(directory: URL, stems: [String], variant: String?) throws -> any TensorSource {
        var tried: [String] = []
        if let variant, let found = try find(directory, stems, variant, &tried) { return found }
        if let found = try find(directory, stems, nil, &tried) { return found }
        throw PipelineError.badModel(path: directory.path, detail: "no weights found (looked for \(tried.joined(separator: ", ")))")
    }

    private static func find(_ directory: URL, _ stems: [String], _ variant: String?, _ tried: inout [String]) throws -> (any TensorSource)? {
        let fm = FileManager.default
        func exists(_ name: String) -> URL? {
            tried.append(name)
            let url = directory.appendingPathComponent(name)
            return fm.fileExists(atPath: url.path) ? url : nil
        }
        let v = variant.map { ".\($0)" } ?? ""
        for stem in stems {
            if let single = exists("\(stem)\(v).safetensors") { return try SafeTensorsFile(path: single.path) }
            if let index = exists("\(stem).safetensors.index\(v).json") { return try ShardedTensorSource(index: index) }
            if variant != nil, let legacy = exists("\(stem)\(v).safetensors.index.json") { return try ShardedTensorSource(index: legacy) }
        }
        for stem in stems {
            if let bin = exists("\(stem)\(v).bin") {
                return TensorDictionary(try TorchCheckpoint.loadStateDict(path: bin.path), description: bin.path)
            }
        }
        return nil
    }
}

/// Weights split over several safetensors files, mapped by a `*.safetensors.index.json` `weight_map`.
struct ShardedTensorSource: TensorSource, @unchecked Sendable {
    let shards: [String: SafeTensorsFile]
    let owner: [String: String]
    let sourceDescription: String

    init(index: URL) throws {
        guard let data = FileManager.default.contents(atPath: index.path),
              let json = try? JSONValue.parse(data, file: index.path), let map = json.objectValue?["weight_map"]?.objectValue else {
            throw PipelineError.badModel(path: index.path, detail: "malformed index (expected an object with \"weight_map\")")
        }
        var owner: [String: String] = [:]
        var shards: [String: SafeTensorsFile] = [:]
        for (name, value) in map {
            guard let file = value.stringValue, !file.contains("/") else {
                throw PipelineError.badModel(path: index.path, detail: "weight_map entry \(name) is not a file name")
            }
            owner[name] = file
            if shards[file] == nil {
                shards[file] = try SafeTensorsFile(path: index.deletingLastPathComponent().appendingPathComponent(file).path)
            }
        }
        self.owner = owner
        self.shards = shards
        sourceDescription = index.path
    }

    var tensorNames: [String] { owner.keys.sorted() }
    func shape(of name: String) -> [Int]? { owner[name].flatMap { shards[$0]?.info(name)?.shape } }
    func tensor(_ name: String) throws -> Tensor { try shard(holding: name).tensor(name) }
    func withTensor<R>(_ name: String, _ body: (Tensor) throws -> R) throws -> R { try shard(holding: name).withTensor(name, body) }

    /// Every shard's identity, and which shard holds which tensor.
    var cacheIdentity: String? {
        var lines: [String] = []
        for file in shards.keys.sorted() {
            guard let id = shards[file]?.cacheIdentity else { return nil }
            lines.append(id)
        }
        let map = owner.keys.sorted().map { "\($0)\t\(owner[$0] ?? "")" }.joined(separator: "\n")
        return "sharded\n" + lines.joined(separator: "\n") + "\nweight map " + PackedWeightCache.fingerprint(map)
    }

    private func shard(holding name: String) throws -> SafeTensorsFile {
        guard let file = owner[name], let shard = shards[file] else {
            throw TensorError.badFile(file: sourceDescription, detail: "tensor \(name) missing")
        }
        return shard
    }
}
