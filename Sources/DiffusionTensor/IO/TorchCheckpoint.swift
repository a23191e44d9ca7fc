/// One storage record of a torch archive (`<archive>/data/<key>`): raw little-endian elements,
/// still inside the file mapping.
final class TorchStorage: @unchecked Sendable {
    let key: String
    let scalarType: ScalarType
    /// Elements available (the count torch recorded, checked against the record's size).
    let count: Int
    let bytes: UnsafeRawBufferPointer
    /// Keeps the mapping behind `bytes` alive.
    let file: MappedFile

    init(key: String, scalarType: ScalarType, count: Int, bytes: UnsafeRawBufferPointer, file: MappedFile) {
        self.key = key
        self.scalarType = scalarType
        self.count = count
        self.bytes = bytes
        self.file = file
    }
}

/// A tensor as torch saved it: a strided view into a storage, read lazily from the mapped file.
/// Views keep torch's storage sharing: two tensors saved from one storage report the same
/// `storageKey`. Bounds were checked when the checkpoint was loaded.
public struct TorchTensor: Sendable {
    public let scalarType: ScalarType
    public let shape: [Int]
    /// Strides in elements, as torch reports them.
    public let strides: [Int]
    public let storageOffset: Int
    /// Key of the storage record in the archive; equal for tensors that share a storage.
    public var storageKey: String { storage.key }
    let storage: TorchStorage

    public var elementCount: Int { shape.reduce(1, *) }

    /// Whether the view is dense row-major (strides of size-1 dimensions do not matter).
    public var isContiguous: Bool {
        var expected = 1
        for (size, stride) in zip(shape, strides).reversed() where size != 1 {
            if stride != expected { return false }
            expected *= size
        }
        return true
    }

    /// Drops the storage's file pages from resident memory once converted (see `MappedFile.release`); a later
    /// read faults them back in from the file.
    public func releaseFilePages() {
        guard let base = storage.bytes.baseAddress, let fileBase = storage.file.bytes.baseAddress else { return }
        storage.file.release(base - fileBase, storage.bytes.count)
    }

    /// The values as a contiguous fp32 tensor, honouring offset and strides. Integer and double
    /// storages convert like `tensor.float()`; complex storages throw.
    public func toTensor() throws -> Tensor {
        guard scalarType.convertsToFloat else {
            throw TensorError.badFile(file: storage.file.path, detail: "storage '\(storage.key)': \(scalarType.rawValue) tensors cannot be converted to fp32")
        }
        var out = Tensor(uninitializedShape: shape)
        let n = elementCount
        guard n > 0, let base = storage.bytes.baseAddress else { return out }
        let type = scalarType
        let offset = storageOffset
        out.withUnsafeMutableBufferPointer { dst in
            guard let d = dst.baseAddress else { return }
            if isContiguous {
                type.convert(base + offset * type.byteSize, count: n, into: d)
                return
            }
            // Odometer over all but the last dimension; the last is a strided inner loop.
            let rank = shape.count
            let inner = shape[rank - 1], innerStride = strides[rank - 1]
            var index = [Int](repeating: 0, count: rank - 1)
            var start = offset
            var o = 0
            while o < n {
                for j in 0..<inner { d[o + j] = type.load(base, start + j * innerStride) }
                o += inner
                var k = rank - 2
                while k >= 0 {
                    index[k] += 1
                    start += strides[k]
                    if index[k] < shape[k] { break }
                    start -= strides[k] * shape[k]
                    index[k] = 0
                    k -= 1
                }
            }
        }
        return out
    }
}

/// A value unpickled from a torch checkpoint. Only data: tensors, containers and scalars, and inert
/// names for the few allowed objects that are not data.
public indirect enum TorchValue: Sendable {
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([TorchValue])
    /// Lists, and sets (kept in pickle order).
    case list([TorchValue])
    /// Dicts and OrderedDicts, in insertion order; keys are usually strings.
    case dict([(key: TorchValue, value: TorchValue)])
    case tensor(TorchTensor)
    /// An allowed object that is not data, kept as a name: Lightning's ModelCheckpoint (class or
    /// instance), a numpy array, a numpy scalar that is no bool, int or float, a torch dtype. Nothing
    /// was constructed or called.
    case opaque(String)

    /// The value for a string key of a dict; nil for other values or a missing key.
    public subscript(key: String) -> TorchValue? {
        guard case .dict(let entries) = self else { return nil }
        for e in entries { if case .string(key) = e.key { return e.value } }
        return nil
    }

    public var tensor: TorchTensor? { if case .tensor(let t) = self { return t } else { return nil } }
    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var int: Int? { if case .int(let i) = self { return i } else { return nil } }
    public var double: Double? { if case .double(let d) = self { return d } else { return nil } }
    public var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var isNone: Bool { if case .none = self { return true } else { return false } }
    public var dictEntries: [(key: TorchValue, value: TorchValue)]? { if case .dict(let e) = self { return e } else { return nil } }
    public var elements: [TorchValue]? {
        switch self {
        case .list(let v), .tuple(let v): return v
        default: return nil
        }
    }
}

/// Reader for `torch.save` files (`.pt`, `.pth`, `.ckpt`, `.bin`): a zip archive holding
/// `<archive>/data.pkl` and one stored record per storage. The pickle is interpreted by a small
/// machine that knows only the globals on `TorchResolver`'s allow-list, one rule for every pickle the
/// engine reads: any other global is refused, naming the file and the global, and nothing in the
/// file is ever executed.
public enum TorchCheckpoint {
    /// Loads the whole pickled object. Tensor data stays in the mapped file until converted.
    public static func load(path: String) throws -> TorchValue {
        let file = try MappedFile(path: path)
        func bad(_ detail: String) -> TensorError { .badFile(file: path, detail: detail) }
        let head = file.slice(0, min(file.count, 4)).map(Array.init) ?? []
        if head.first == 0x80 {
            throw bad("legacy (pre-1.6, non-zip) torch serialization format is not supported; re-save it with a current torch.save, or convert it to .safetensors")
        }
        guard head == [0x50, 0x4B, 0x03, 0x04] || head == [0x50, 0x4B, 0x05, 0x06] else {
            throw bad("not a torch checkpoint: expected a zip archive (torch.save format)")
        }
        let zip = try ZipArchive(file: file)
        let pickles = zip.entries.map(\.name).filter {
            let parts = $0.split(separator: "/", omittingEmptySubsequences: false)
            return parts.count == 2 && parts[1] == "data.pkl"
        }
        guard pickles.count == 1, let pickleName = pickles.first else {
            throw bad(pickles.isEmpty ? "zip archive has no '<archive>/data.pkl' entry; not a torch.save file"
                                      : "zip archive has several data.pkl entries: \(pickles.joined(separator: ", "))")
        }
        let prefix = String(pickleName.dropLast("data.pkl".count))
        if zip.entry(prefix + "byteorder") != nil {
            let order = String(decoding: try zip.data(prefix + "byteorder", verifyCRC: true), as: UTF8.self)
            guard order == "little" else { throw bad("zip entry '\(prefix)byteorder': byte order '\(order)' is not supported (only little)") }
        }
        let pickle = try zip.data(pickleName, verifyCRC: true)
        let resolver = TorchResolver(zip: zip, prefix: prefix, path: path, pickleName: pickleName)
        var machine = PickleMachine(bytes: pickle, source: pickleName, file: path, resolver: resolver)
        let value = try machine.run()
        var converter = Converter(path: path, source: pickleName)
        return try converter.convert(value)
    }

    /// The tensors of a state dict as fp32. A top-level `state_dict` entry (as in Lightning and
    /// original Stable Diffusion `.ckpt` files) is used when present; nested dicts of tensors are
    /// flattened with dotted names; non-tensor entries (epoch, config, ...) are skipped.
    public static func loadStateDict(path: String) throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (name, t) in try stateDictTensors(path: path) {
            do { out[name] = try t.toTensor() } catch TensorError.badFile(_, let detail) {
                throw TensorError.badFile(file: path, detail: "tensor '\(name)': \(detail)")
            }
        }
        return out
    }

    /// Like `loadStateDict`, without converting: each tensor still refers to the mapped file.
    public static func stateDictTensors(path: String) throws -> [String: TorchTensor] {
        let root = try load(path: path)
        var dict = root
        if let inner = root["state_dict"], inner.dictEntries != nil { dict = inner }
        guard dict.dictEntries != nil else {
            throw TensorError.badFile(file: path, detail: "holds a \(describe(root)), not a dict of tensors (state dict)")
        }
        var out: [String: TorchTensor] = [:]
        // Shared sub-dicts would be walked once per path; bound the walk so a crafted file cannot
        // make it exponential.
        var visits = 0
        func walk(_ v: TorchValue, _ prefix: String, depth: Int) throws {
            guard depth < 64, let entries = v.dictEntries else { return }
            visits += entries.count
            guard visits <= 1_000_000 else {
                throw TensorError.badFile(file: path, detail: "state dict has more than a million entries (shared sub-dicts?); refusing")
            }
            for (k, value) in entries {
                guard case .string(let key) = k else { continue }
                let name = prefix + key
                switch value {
                case .tensor(let t):
                    guard out[name] == nil else { throw TensorError.badFile(file: path, detail: "tensor name '\(name)' occurs twice after flattening") }
                    out[name] = t
                case .dict: try walk(value, name + ".", depth: depth + 1)
                default: continue
                }
            }
        }
        try walk(dict, "", depth: 0)
        return out
    }

    static func describe(_ v: TorchValue) -> String {
        switch v {
        case .none: return "None"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "string"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case .tensor: return "tensor"
        case .opaque(let name): return "object of \(name)"
        }
    }

    /// Pickle graph -> value tree. Lists, tuples and dicts are converted once per object and the
    /// result reused (arrays share storage), so memo-shared structures cost their pickle size, not
    /// their expanded size (a few bytes of pickle can describe 2^60 nodes). Cycles are refused.
    private struct Converter {
        let path: String
        let source: String
        var done: [ObjectIdentifier: TorchValue] = [:]
        var active: Set<ObjectIdentifier> = []
        var budget = 10_000_000

        func bad(_ detail: String) -> TensorError { .badFile(file: path, detail: "\(source): \(detail)") }

        mutating func convert(_ v: PickleValue, depth: Int = 0) throws -> TorchValue {
            guard depth < 200 else { throw bad("objects nested more than 200 deep") }
            budget -= 1
            guard budget >= 0 else { throw bad("more than 10 million objects; refusing") }
            switch v {
            case .none: return .none
            case .bool(let b): return .bool(b)
            case .int(let i): return .int(i)
            case .float(let d): return .double(d)
            case .string(let s): return .string(s)
            case .bytes(let b): return .bytes(b)
            case .tensor(let t): return .tensor(t)
            case .tuple(let l):
                return try shared(l) { c in .tuple(try l.items.map { try c.convert($0, depth: depth + 1) }) }
            case .list(let l):
                return try shared(l) { c in .list(try l.items.map { try c.convert($0, depth: depth + 1) }) }
            case .dict(let d):
                return try shared(d) { c in
                    .dict(try d.entries.map { (key: try c.convert($0.key, depth: depth + 1), value: try c.convert($0.value, depth: depth + 1)) })
                }
            case .object(let o):
                // A ParameterDict is its parameters (early textual-inversion files); other objects are names.
                if o.type == TorchResolver.parameterDict, case .dict(let state)? = o.state, let params = state["_parameters"] {
                    return try convert(params, depth: depth + 1)
                }
                return .opaque(o.type)
            case .global(let m, let n):
                // An allowed class used as a value, e.g. Lightning's ModelCheckpoint as a callbacks key.
                return .opaque("\(m).\(n)")
            case .storage(let s): throw bad("bare storage '\(s.key)' (not wrapped in a tensor) is not supported")
            }
        }

        private mutating func shared(_ object: AnyObject, _ body: (inout Converter) throws -> TorchValue) throws -> TorchValue {
            let id = ObjectIdentifier(object)
            if let v = done[id] { return v }
            guard active.insert(id).inserted else { throw bad("object contains itself (cyclic structure)") }
            let v = try body(&self)
            active.remove(id)
            done[id] = v
            return v
        }
    }
}
