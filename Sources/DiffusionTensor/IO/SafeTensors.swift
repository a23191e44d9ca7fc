import Foundation

/// Where one tensor lives in a SafeTensors file.
public struct SafeTensorInfo: Sendable, Equatable {
    public let name: String
    /// The dtype string exactly as the header spells it ("F16", "I64", ...).
    public let dtypeName: String
    /// Element type; every dtype of the SafeTensors format the reader knows (see `ScalarType`).
    public let scalarType: ScalarType
    public let shape: [Int]
    /// Byte range relative to the start of the file.
    public let fileRange: Range<Int>

    public var elementCount: Int { shape.reduce(1, *) }
    /// The native storage dtype, nil for types that are converted (F64, I64, U8, ...).
    public var dtype: DType? { scalarType.dtype }
}

/// A memory-mapped `.safetensors` file. The header is validated completely on open, so later
/// accesses cannot read outside the file; tensor data is converted to fp32 only when asked for.
///
/// Format: 8-byte little-endian header length N, N bytes of JSON
/// `{"name": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`,
/// then the data section; offsets are relative to the data section.
public final class SafeTensorsFile: @unchecked Sendable {
    public let path: String
    public let metadata: [String: String]
    /// All tensor names, sorted.
    public let tensorNames: [String]
    private let infos: [String: SafeTensorInfo]
    private let file: MappedFile

    /// The reference implementation refuses headers over 100 MB; so do we, before parsing.
    static let maxHeaderSize = 100_000_000

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        func bad(_ detail: String) -> TensorError { .badFile(file: path, detail: detail) }

        guard let rawLength = file.readLE(UInt64.self, at: 0) else {
            throw bad("file is \(file.count) bytes, too short for the 8-byte safetensors header length")
        }
        guard rawLength <= UInt64(file.count - 8) else {
            throw bad("header length \(rawLength) runs past the end of the file (\(file.count) bytes): truncated or not a safetensors file")
        }
        let headerLength = Int(rawLength)
        guard headerLength <= Self.maxHeaderSize else {
            throw bad("header length \(headerLength) exceeds the \(Self.maxHeaderSize)-byte limit")
        }
        let dataStart = 8 + headerLength
        let dataSize = file.count - dataStart
        guard let headerBytes = file.slice(8, headerLength) else { throw bad("header out of range") }

        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(headerBytes), options: [])
        } catch {
            throw bad("header is not valid JSON (\(error.localizedDescription))")
        }
        guard let root = json as? [String: Any] else { throw bad("header JSON is not an object") }

        var metadata: [String: String] = [:]
        var infos: [String: SafeTensorInfo] = [:]
        for (name, value) in root {
            if name == "__metadata__" {
                guard let dict = value as? [String: Any] else { throw bad("__metadata__ is not an object") }
                for (k, v) in dict {
                    guard let s = v as? String else { throw bad("__metadata__ value for '\(k)' is not a string") }
                    metadata[k] = s
                }
                continue
            }
            infos[name] = try Self.parseEntry(name: name, value: value, dataStart: dataStart, dataSize: dataSize, path: path)
        }

        // Tensors must not share bytes: a writer never produces overlap, and allowing it would let
        // a crafted file alias one tensor's data as another's.
        let ordered = infos.values.filter { !$0.fileRange.isEmpty }.sorted { $0.fileRange.lowerBound < $1.fileRange.lowerBound }
        for (a, b) in zip(ordered, ordered.dropFirst()) where b.fileRange.lowerBound < a.fileRange.upperBound {
            throw bad("tensor '\(b.name)' overlaps tensor '\(a.name)' in the data section")
        }

        self.metadata = metadata
        self.infos = infos
        self.tensorNames = infos.keys.sorted()
    }

    private static func parseEntry(name: String, value: Any, dataStart: Int, dataSize: Int, path: String) throws -> SafeTensorInfo {
        func bad(_ detail: String) -> TensorError { .badFile(file: path, detail: "tensor '\(name)': \(detail)") }
        guard let entry = value as? [String: Any] else { throw bad("header entry is not an object") }
        guard let dtypeName = entry["dtype"] as? String else { throw bad("missing or non-string 'dtype'") }
        guard let scalarType = ScalarType(rawValue: dtypeName) else { throw bad("unknown dtype '\(dtypeName)'") }
        guard let shapeArray = entry["shape"] as? [Any] else { throw bad("missing or non-array 'shape'") }
        var shape: [Int] = []
        for dim in shapeArray {
            guard let d = jsonInt(dim), d >= 0 else { throw bad("shape \(shapeArray) has an entry that is not a non-negative integer") }
            shape.append(d)
        }
        guard let offsets = entry["data_offsets"] as? [Any], offsets.count == 2,
              let begin = jsonInt(offsets[0]), let end = jsonInt(offsets[1]) else {
            throw bad("'data_offsets' is not a pair of integers")
        }
        guard begin >= 0, begin <= end, end <= dataSize else {
            throw bad("data_offsets [\(begin), \(end)] lie outside the \(dataSize)-byte data section (truncated file?)")
        }
        var bytes = scalarType.byteSize
        for d in shape {
            let (p, overflow) = bytes.multipliedReportingOverflow(by: d)
            guard !overflow else { throw bad("shape \(shape) is too large") }
            bytes = p
        }
        guard end - begin == bytes else {
            throw bad("shape \(shape) of \(dtypeName) needs \(bytes) bytes but data_offsets [\(begin), \(end)] hold \(end - begin)")
        }
        return SafeTensorInfo(name: name, dtypeName: dtypeName, scalarType: scalarType, shape: shape,
                              fileRange: (dataStart + begin)..<(dataStart + end))
    }

    /// A JSON integer: rejects booleans (which Foundation also bridges to Int) and fractions.
    static func jsonInt(_ value: Any) -> Int? {
        guard let n = value as? NSNumber, String(cString: n.objCType) != "c" else { return nil }
        return value as? Int
    }

    public func info(_ name: String) -> SafeTensorInfo? { infos[name] }

    private func requireInfo(_ name: String) throws -> SafeTensorInfo {
        guard let info = infos[name] else { throw TensorError.badFile(file: path, detail: "no tensor named '\(name)'") }
        return info
    }

    /// The tensor converted to fp32 (F16/BF16 exactly; F64 rounded; integers as `Float(value)`).
    public func tensor(_ name: String) throws -> Tensor {
        let info = try requireInfo(name)
        guard info.scalarType.convertsToFloat else {
            throw TensorError.badFile(file: path, detail: "tensor '\(name)': dtype \(info.dtypeName) cannot be converted to F32")
        }
        var t = Tensor(uninitializedShape: info.shape)
        let n = info.elementCount
        if n > 0, let src = file.slice(info.fileRange.lowerBound, info.fileRange.count)?.baseAddress {
            t.withUnsafeMutableBufferPointer { dst in
                if let d = dst.baseAddress { info.scalarType.convert(src, count: n, into: d) }
            }
            file.release(info.fileRange.lowerBound, info.fileRange.count)
        }
        return t
    }

    /// Every tensor, converted to fp32.
    public func allTensors() throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for name in tensorNames { out[name] = try tensor(name) }
        return out
    }

    /// The tensor's bytes as stored (little-endian, its own dtype), without copying. The pointer is
    /// only valid inside `body`.
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let info = try requireInfo(name)
        guard let bytes = file.slice(info.fileRange.lowerBound, info.fileRange.count) else {
            throw TensorError.badFile(file: path, detail: "tensor '\(name)': data out of range")
        }
        return try withExtendedLifetime(file) { try body(bytes) }
    }
}

extension SafeTensorsFile: TensorSource {
    public func shape(of name: String) -> [Int]? { info(name)?.shape }
    public var sourceDescription: String { path }

    /// The file's absolute path with its size, modification time and inode when mapped.
    public var cacheIdentity: String? {
        "safetensors \(URL(fileURLWithPath: path).standardizedFileURL.path) \(file.fileIdentity)"
    }

    /// An F32 tensor is handed over in place, borrowing the mapping (no copy: a bf16 model's load then reads
    /// each weight once, converting it); its pages are released after `body`. Other types are converted.
    public func withTensor<R>(_ name: String, _ body: (Tensor) throws -> R) throws -> R {
        let info = try requireInfo(name)
        guard info.scalarType.dtype == .float32, info.elementCount > 0,
              let bytes = file.slice(info.fileRange.lowerBound, info.fileRange.count), let base = bytes.baseAddress,
              Int(bitPattern: base) % MemoryLayout<Float>.alignment == 0 else {
            return try body(try tensor(name))
        }
        defer { file.release(info.fileRange.lowerBound, info.fileRange.count) }
        return try withExtendedLifetime(file) {
            try body(Tensor(borrowing: base.assumingMemoryBound(to: Float.self), shape: info.shape))
        }
    }
}
