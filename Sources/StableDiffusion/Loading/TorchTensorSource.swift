import Foundation
import DiffusionTensor

/// The tensors of a torch checkpoint, still in the mapped file: each is converted to fp32 only when asked for.
public struct TorchTensorSource: TensorSource {
    public let tensors: [String: TorchTensor]
    public let sourceDescription: String

    public init(_ tensors: [String: TorchTensor], description: String) {
        self.tensors = tensors
        sourceDescription = description
    }

    public var tensorNames: [String] { tensors.keys.sorted() }
    public func shape(of name: String) -> [Int]? { tensors[name]?.shape }
    public func tensor(_ name: String) throws -> Tensor {
        guard let t = tensors[name] else { throw TensorError.badFile(file: sourceDescription, detail: "tensor \(name) missing") }
        // Like SafeTensorsFile: once converted, the file pages need not stay resident beside the fp32 copy.
        defer { t.releaseFilePages() }
        do { return try t.toTensor() } catch TensorError.badFile(_, let detail) {
            throw TensorError.badFile(file: sourceDescription, detail: "tensor \(name): \(detail)")
        }
    }
}
