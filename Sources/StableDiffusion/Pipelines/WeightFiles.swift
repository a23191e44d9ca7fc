import Foundation
import DiffusionTensor

/// Finds and opens a component's weights: `.safetensors` (single or sharded with an index), else a torch
/// `.bin`; with a variant (e.g. `fp16`) the `name.fp16.safetensors` files.
enum WeightFiles {
    /// - Parameter stem: `diffusion_pytorch_model` (diffusers) or `model` / `pytorch_model` (transformers).
    static func open(directory: URL, stems: [String], variant: String?) throws -> any TensorSource {
        let fm = FileManager.default
        func file(_ stem: String, _ ext: String) -> URL {
            directory.appendingPathComponent(variant.map { "\(stem).\($0).\(ext)" } ?? "\(stem).\(ext)")
        }
        var tried: [String] = []
        for stem in stems {
            let single = file(stem, "safetensors")
            tried.append(single.lastPathComponent)
            if fm.fileExists(atPath: single.path) { return try SafeTensorsFile(path: single.path) }
            let index = file(stem, "safetensors.index.json")
            tried.append(index.lastPathComponent)
            if fm.fileExists(atPath: index.path) { return try ShardedTensorSource(index: index) }
        }
        for stem in stems {
            let bin = file(stem, "bin")
            tried.append(bin.lastPathComponent)
            if fm.fileExists(atPath: bin.path) {
                return TensorDictionary(try TorchCheckpoint.loadStateDict(path: bin.path), description: bin.path)
            }
        }
        throw PipelineError.badModel(path: directory.path, detail: "no weights found (looked for \(tried.joined(separator: ", ")))")
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
    func tensor(_ name: String) throws -> Tensor {
        guard let file = owner[name], let shard = shards[file] else {
            throw TensorError.badFile(file: sourceDescription, detail: "tensor \(name) missing")
        }
        return try shard.tensor(name)
    }
}
