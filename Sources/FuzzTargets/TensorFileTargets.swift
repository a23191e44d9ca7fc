import DiffusionTensor
import Foundation

enum TensorFileTargets {
    static func safetensors(_ data: [UInt8]) throws {
        let url = try ScratchFile.write(data, as: "input.safetensors")
        let file = try SafeTensorsFile(path: url.path)
        _ = file.metadata.count
        for name in file.tensorNames {
            _ = file.shape(of: name)
            _ = try? file.withRawBytes(name) { $0.count }
            _ = try? file.tensor(name)
        }
    }

    static func torch(_ data: [UInt8]) throws {
        let url = try ScratchFile.write(data, as: "input.pt")
        // The whole value (single files, embeddings), then the state-dict view (LoRA, .bin weights).
        let root = try? TorchCheckpoint.load(path: url.path)
        if let t = root?.tensor { _ = try? t.toTensor() }
        for (_, t) in try TorchCheckpoint.stateDictTensors(path: url.path) {
            _ = t.isContiguous
            _ = try? t.toTensor()
        }
    }
}
