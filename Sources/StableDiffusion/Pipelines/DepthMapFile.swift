import Foundation
import DiffusionTensor

/// Depth maps given by the user, shaped (H, W), (1, H, W) or (B, H, W), from:
/// `.pt`/`.pth` (`torch.save` of a tensor, or of a dict holding one), `.npy`, `.safetensors` (one tensor,
/// or one named `depth`/`depth_map`), or a grayscale PNG (8- or 16-bit values as stored).
public enum DepthMapFile {
    public static func load(path: String) throws -> Tensor {
        let ext = URL(fileURLWithPath: path).pathExtension.lowercased()
        let tensor: Tensor
        switch ext {
        case "pt", "pth", "bin", "ckpt": tensor = try loadTorch(path)
        case "npy": tensor = try loadNPY(path)
        case "safetensors": tensor = try loadSafeTensors(path)
        case "png": tensor = try loadPNG(path)
        default:
            throw PipelineError.invalidArgument("\(path): unsupported depth map format .\(ext) (use .pt, .npy, .safetensors or .png)")
        }
        guard (2...3).contains(tensor.rank), tensor.shape.allSatisfy({ $0 > 0 }) else {
            throw PipelineError.invalidArgument("\(path): depth map must be (H, W), (1, H, W) or (B, H, W), got \(tensor.shape)")
        }
        return tensor
    }

    static func loadTorch(_ path: String) throws -> Tensor {
        let value = try TorchCheckpoint.load(path: path)
        if let t = value.tensor { return try t.toTensor() }
        let tensors = try TorchCheckpoint.loadStateDict(path: path)
        if tensors.count == 1, let only = tensors.values.first { return only }
        for key in ["depth", "depth_map", "predicted_depth"] { if let t = tensors[key] { return t } }
        throw PipelineError.invalidArgument("\(path): expected a tensor (or a dict with one tensor), found \(tensors.count) tensors")
    }

    static func loadSafeTensors(_ path: String) throws -> Tensor {
        let file = try SafeTensorsFile(path: path)
        if file.tensorNames.count == 1 { return try file.tensor(file.tensorNames[0]) }
        for key in ["depth", "depth_map", "predicted_depth"] where file.info(key) != nil { return try file.tensor(key) }
        throw PipelineError.invalidArgument("\(path): expected one tensor or one named \"depth\", found \(file.tensorNames.count)")
    }

    static func loadPNG(_ path: String) throws -> Tensor {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PipelineError.invalidArgument("\(path): cannot read file")
        }
        return try decodePNG(Array(data), file: path)
    }

    /// A grayscale PNG depth map held in memory (8- or 16-bit values as stored), shaped (H, W).
    public static func decodePNG(_ data: [UInt8], file: String = "<memory>") throws -> Tensor {
        let gray = try PNGCodec.decodeGray16(data, file: file)
        return try Tensor(shape: [gray.height, gray.width], scalars: gray.values.map(Float.init))
    }

    /// NumPy's `.npy` (format 1.0-3.0), little-endian float/int/uint types, C order.
    static func loadNPY(_ path: String) throws -> Tensor {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PipelineError.invalidArgument("\(path): cannot read file")
        }
        let bytes = [UInt8](data)
        func bad(_ why: String) -> PipelineError { .invalidArgument("\(path): not a valid .npy file (\(why))") }
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1...5]) == Array("NUMPY".utf8) else { throw bad("magic") }
        let major = bytes[6]
        let headerLength: Int, start: Int
        switch major {
        case 1: headerLength = Int(bytes[8]) | Int(bytes[9]) << 8; start = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw bad("truncated header") }
            headerLength = (0..<4).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) }; start = 12
        default: throw bad("version \(major)")
        }
        guard start + headerLength <= bytes.count else { throw bad("truncated header") }
        let header = String(decoding: bytes[start..<(start + headerLength)], as: UTF8.self)
        func field(_ name: String) -> String? {
            guard let r = header.range(of: "'\(name)':") else { return nil }
            return String(header[r.upperBound...]).trimmingCharacters(in: .whitespaces)
        }
        guard let descrField = field("descr"), let q1 = descrField.firstIndex(of: "'"),
              let q2 = descrField[descrField.index(after: q1)...].firstIndex(of: "'") else { throw bad("no descr") }
        let descr = String(descrField[descrField.index(after: q1)..<q2])
        if let fortran = field("fortran_order"), fortran.hasPrefix("True") {
            throw PipelineError.invalidArgument("\(path): Fortran-ordered arrays are not supported (save with np.ascontiguousarray)")
        }
        guard let shapeField = field("shape"), let open = shapeField.firstIndex(of: "("),
              let close = shapeField[open...].firstIndex(of: ")") else {
            throw bad("no shape")
        }
        let dims = try shapeField[shapeField.index(after: open)..<close].split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            .map { (s: String) -> Int in guard let v = Int(s), v >= 0 else { throw bad("shape \(s)") }; return v }
        let body = start + headerLength
        let sizes: [String: Int] = ["<f4": 4, "<f8": 8, "<f2": 2, "|u1": 1, "<u2": 2, "<i2": 2, "<i4": 4, "<i8": 8, "|b1": 1, "|i1": 1]
        guard let size = sizes[descr] else { throw PipelineError.invalidArgument("\(path): unsupported .npy dtype \(descr)") }
        // The header's shape is checked against the bytes present before anything is allocated for it.
        var count = 1
        for d in dims {
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow else { throw bad("shape \(dims) is too large") }
            count = product
        }
        guard count <= (bytes.count - body) / size else {
            throw bad("data truncated: shape \(dims) of \(descr) needs more than the \(bytes.count - body) bytes present")
        }
        var values = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { raw in
            let p = raw.baseAddress! + body
            for i in 0..<count {
                switch descr {
                case "<f4": values[i] = Float(bitPattern: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self).littleEndian)
                case "<f8": values[i] = Float(Double(bitPattern: p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self).littleEndian))
                case "<f2": values[i] = HalfConversion.float(fromHalf: p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian)
                case "<u2": values[i] = Float(p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian)
                case "<i2": values[i] = Float(Int16(bitPattern: p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian))
                case "<i4": values[i] = Float(Int32(bitPattern: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self).littleEndian))
                case "<i8": values[i] = Float(Int64(bitPattern: p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self).littleEndian))
                case "|i1": values[i] = Float(Int8(bitPattern: p.load(fromByteOffset: i, as: UInt8.self)))
                default: values[i] = Float(p.load(fromByteOffset: i, as: UInt8.self))
                }
            }
        }
        return try Tensor(shape: dims, scalars: values)
    }
}
