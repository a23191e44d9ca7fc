import Foundation
import DiffusionTensor

/// How one diffusers tensor is made from one tensor of the original checkpoint.
public enum TensorTransform: Sendable, Equatable {
    /// The same values, same shape.
    case identity
    /// A 1x1 convolution (or 1-wide Conv1d) kernel used as a linear layer: trailing size-1 dims dropped.
    case dropTrailingUnitDims
    /// Part `index` of `parts` equal row blocks (OpenCLIP's fused q/k/v `in_proj`).
    case rowBlock(index: Int, parts: Int)
    /// A 2-D matrix transposed (OpenCLIP's `text_projection`, applied as `x @ P`, to a Linear weight).
    case transposed

    func shape(from shape: [Int]) -> [Int]? {
        switch self {
        case .identity: return shape
        case .dropTrailingUnitDims:
            var s = shape
            while s.count > 2, s.last == 1 { s.removeLast() }
            return s
        case .rowBlock(let index, let parts):
            guard let rows = shape.first, rows % parts == 0, index < parts else { return nil }
            return [rows / parts] + shape.dropFirst()
        case .transposed:
            guard shape.count == 2 else { return nil }
            return [shape[1], shape[0]]
        }
    }
}

/// A view of a checkpoint under other names: every diffusers name points at one original tensor plus a
/// transform. Nothing is copied until a model asks for a tensor, so the mapped file stays the only copy.
public struct RenamedTensorSource: TensorSource {
    public struct Entry: Sendable, Equatable {
        public var sourceName: String
        public var transform: TensorTransform
        public init(_ sourceName: String, _ transform: TensorTransform = .identity) {
            self.sourceName = sourceName
            self.transform = transform
        }
    }

    public let base: any TensorSource
    public let entries: [String: Entry]
    public let sourceDescription: String

    public init(base: any TensorSource, entries: [String: Entry], description: String) {
        self.base = base
        self.entries = entries
        sourceDescription = description
    }

    public var tensorNames: [String] { entries.keys.sorted() }

    /// The base's identity and the renaming (the same file converted by other rules is other weights).
    public var cacheIdentity: String? {
        guard let base = base.cacheIdentity else { return nil }
        let rules = entries.keys.sorted().map { name in
            let e = entries[name]!
            return "\(name)\t\(e.sourceName)\t\(e.transform)"
        }.joined(separator: "\n")
        return base + "\nrenamed " + PackedWeightCache.fingerprint(rules)
    }

    public func shape(of name: String) -> [Int]? {
        guard let e = entries[name], let s = base.shape(of: e.sourceName) else { return nil }
        return e.transform.shape(from: s)
    }

    /// A renamed tensor passes straight through (borrowed where the base lends it); transformed ones are copies.
    public func withTensor<R>(_ name: String, _ body: (Tensor) throws -> R) throws -> R {
        guard let e = entries[name], e.transform == .identity else { return try body(try tensor(name)) }
        return try base.withTensor(e.sourceName, body)
    }

    public func tensor(_ name: String) throws -> Tensor {
        guard let e = entries[name] else {
            throw TensorError.badFile(file: sourceDescription, detail: "tensor \(name) missing")
        }
        let t = try base.tensor(e.sourceName)
        guard let shape = e.transform.shape(from: t.shape) else {
            throw TensorError.badFile(file: sourceDescription, detail: "tensor \(e.sourceName) has shape \(t.shape), which cannot be split or transposed for \(name)")
        }
        switch e.transform {
        case .identity: return t
        case .dropTrailingUnitDims: return try t.reshaped(shape)
        case .rowBlock(let index, _):
            let rows = shape[0]
            return try t.slice(axis: 0, (index * rows)..<((index + 1) * rows))
        case .transposed: return try t.permuted([1, 0])
        }
    }
}
