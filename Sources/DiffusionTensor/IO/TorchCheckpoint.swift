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

/// A value unpickled from a torch checkpoint. Only data: tensors, containers and scalars.
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
    /// An object of a class outside the whitelist, or a reference to such a class, kept as its
    /// qualified name ("pytorch_lightning.callbacks.ModelCheckpoint"). Only produced when loading
    /// with `unknownGlobals: .placeholder`; its constructor was never run.
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
/// machine that knows only the globals torch uses for tensors and state dicts, so a malicious file
/// is refused with the offending global named, and nothing in it is ever executed.
public enum TorchCheckpoint {
    /// What to do with a global (class or function) outside the whitelist.
    public enum UnknownGlobals: Sendable {
        /// Throw, naming the global. The default: a file that needs anything else is not a plain
        /// tensor checkpoint.
        case refuse
        /// Build an inert `.opaque(name)` in its place, never calling it. For training checkpoints
        /// that carry framework objects (e.g. Lightning callbacks keyed by class) next to the
        /// weights. Still executes nothing, so a malicious file only yields placeholders.
        case placeholder
    }

    /// Loads the whole pickled object. Tensor data stays in the mapped file until converted.
    public static func load(path: String, unknownGlobals: UnknownGlobals = .refuse) throws -> TorchValue {
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
        let resolver = TorchResolver(zip: zip, prefix: prefix, path: path, pickleName: pickleName,
                                     allowUnknown: unknownGlobals == .placeholder)
        var machine = PickleMachine(bytes: pickle, source: pickleName, file: path, resolver: resolver)
        let value = try machine.run()
        var converter = Converter(path: path, source: pickleName, allowUnknown: unknownGlobals == .placeholder)
        return try converter.convert(value)
    }

    /// The tensors of a state dict as fp32. A top-level `state_dict` entry (as in Lightning and
    /// original Stable Diffusion `.ckpt` files) is used when present; nested dicts of tensors are
    /// flattened with dotted names; non-tensor entries (epoch, config, ...) are skipped.
    public static func loadStateDict(path: String, unknownGlobals: UnknownGlobals = .refuse) throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (name, t) in try stateDictTensors(path: path, unknownGlobals: unknownGlobals) {
            do { out[name] = try t.toTensor() } catch TensorError.badFile(_, let detail) {
                throw TensorError.badFile(file: path, detail: "tensor '\(name)': \(detail)")
            }
        }
        return out
    }

    /// Like `loadStateDict`, without converting: each tensor still refers to the mapped file.
    public static func stateDictTensors(path: String, unknownGlobals: UnknownGlobals = .refuse) throws -> [String: TorchTensor] {
        let root = try load(path: path, unknownGlobals: unknownGlobals)
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
        let allowUnknown: Bool
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
            case .opaque(let name): return .opaque(name)
            case .global(let m, let n):
                // A class used as a value, e.g. as a dict key in Lightning's callback state.
                if allowUnknown { return .opaque("\(m).\(n)") }
                throw bad("global \(m).\(n) appears as a value; only tensors and plain data are supported")
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

/// The whitelist: what each allowed global means, and how torch's persistent ids map to storages.
final class TorchResolver: PickleResolver {
    let zip: ZipArchive
    let prefix: String
    let path: String
    let pickleName: String
    let allowUnknown: Bool
    private var storages: [String: TorchStorage] = [:]

    init(zip: ZipArchive, prefix: String, path: String, pickleName: String, allowUnknown: Bool) {
        self.allowUnknown = allowUnknown
        self.zip = zip
        self.prefix = prefix
        self.path = path
        self.pickleName = pickleName
    }

    static let storageTypes: [String: ScalarType] = [
        "FloatStorage": .float32, "HalfStorage": .float16, "BFloat16Storage": .bfloat16, "DoubleStorage": .float64,
        "LongStorage": .int64, "IntStorage": .int32, "ShortStorage": .int16, "CharStorage": .int8,
        "ByteStorage": .uint8, "BoolStorage": .bool,
    ]

    /// Callables and classes that only build data.
    static let functions: Set<String> = [
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
        "torch._tensor._rebuild_from_type_v2",
        "torch.Size", "torch.device",
        "_codecs.encode",
        "builtins.set", "builtins.frozenset", "__builtin__.set", "__builtin__.frozenset",
    ]
    /// Largest expanded/overlapping view accepted (256 MiB as fp32).
    static let maxExpandedElements = 1 << 26

    /// Classes that may appear as arguments (the type in `_rebuild_from_type_v2`).
    static let tensorClasses: Set<String> = ["torch.Tensor", "torch.nn.parameter.Parameter"]

    private func fail(_ detail: String) -> TensorError { .badFile(file: path, detail: "\(pickleName): \(detail)") }

    func global(module: String, name: String) throws -> PickleValue {
        let full = "\(module).\(name)"
        let allowed = Self.functions.contains(full) || Self.tensorClasses.contains(full)
            || (module == "torch" && Self.storageTypes[name] != nil)
        guard allowed || allowUnknown else {
            throw fail("refused global '\(full)': only the globals torch.save uses for tensors and state dicts are allowed (nothing was executed)")
        }
        return .global(module: module, name: name)
    }

    func persistentLoad(_ pid: PickleValue) throws -> PickleValue {
        // torch.save: ('storage', storage_type, key, location, numel)
        guard case .tuple(let tuple) = pid, case let t = tuple.items, t.count == 5, case .string("storage") = t[0],
              case .global("torch", let typeName) = t[1], case .string(let key) = t[2],
              case .int(let numel) = t[4], numel >= 0 else {
            throw fail("persistent id is not a torch storage reference")
        }
        guard let type = Self.storageTypes[typeName] else { throw fail("unsupported storage type torch.\(typeName)") }
        if let s = storages[key] {
            guard s.scalarType == type else { throw fail("storage '\(key)' is used as both \(s.scalarType.rawValue) and \(type.rawValue)") }
            return .storage(s)
        }
        let entry = prefix + "data/" + key
        let bytes = try zip.data(entry)
        let (needed, overflow) = numel.multipliedReportingOverflow(by: type.byteSize)
        guard !overflow, bytes.count >= needed else {
            throw TensorError.badFile(file: path, detail: "zip entry '\(entry)': holds \(bytes.count) bytes, storage of \(numel) \(type.rawValue) needs \(needed) (truncated?)")
        }
        let s = TorchStorage(key: key, scalarType: type, count: numel, bytes: bytes, file: zip.file)
        storages[key] = s
        return .storage(s)
    }

    private func intList(_ v: PickleValue, _ what: String) throws -> [Int] {
        guard case .tuple(let tuple) = v else { throw fail("tensor \(what) is a \(v.kind), not a tuple") }
        return try tuple.items.map {
            guard case .int(let i) = $0, i >= 0 else { throw fail("tensor \(what) has an entry that is not a non-negative int") }
            return i
        }
    }

    private func rebuildTensor(_ args: [PickleValue]) throws -> PickleValue {
        guard args.count >= 4, case .storage(let storage) = args[0], case .int(let offset) = args[1], offset >= 0 else {
            throw fail("_rebuild_tensor arguments are not (storage, offset, size, stride, ...)")
        }
        let shape = try intList(args[2], "size")
        let strides = try intList(args[3], "stride")
        guard shape.count == strides.count else { throw fail("tensor size \(shape) and stride \(strides) differ in rank") }
        // The highest element the view touches must lie inside the storage.
        var count = 1
        var last = offset
        for (size, stride) in Swift.zip(shape, strides) {
            let (c, o1) = count.multipliedReportingOverflow(by: size)
            let (span, o2) = max(size - 1, 0).multipliedReportingOverflow(by: stride)
            let (l, o3) = last.addingReportingOverflow(span)
            guard !o1, !o2, !o3 else { throw fail("tensor size \(shape) / stride \(strides) overflow") }
            count = c
            last = l
        }
        if count > 0, last >= storage.count {
            throw fail("tensor view (offset \(offset), size \(shape), stride \(strides)) reaches element \(last) of storage '\(storage.key)', which has \(storage.count)")
        }
        // A view within bounds that does not overlap itself has at most storage.count elements;
        // expanded (stride 0) or overlapping views can be far larger than the file, so cap them to
        // keep a crafted file from forcing a huge allocation on conversion.
        if count > storage.count, count > Self.maxExpandedElements {
            throw fail("tensor view of \(count) elements over storage '\(storage.key)' of \(storage.count) (expanded or overlapping) is too large")
        }
        return .tensor(TorchTensor(scalarType: storage.scalarType, shape: shape, strides: strides, storageOffset: offset, storage: storage))
    }

    private func isWhitelisted(_ full: String) -> Bool {
        Self.functions.contains(full) || Self.tensorClasses.contains(full)
    }

    func call(_ callable: PickleValue, _ args: [PickleValue]) throws -> PickleValue {
        guard case .global(let module, let name) = callable else { throw fail("calling a \(callable.kind), which is not a whitelisted global") }
        let full = "\(module).\(name)"
        if !isWhitelisted(full) {
            // Reached only in placeholder mode (refuse mode stops at the GLOBAL opcode).
            guard allowUnknown else { throw fail("global \(full) cannot be called") }
            return .opaque(full)
        }
        switch full {
        case "collections.OrderedDict":
            let d = PickleDict()
            if let first = args.first {
                // OrderedDict(iterable of pairs)
                guard case .list(let l) = first else { throw fail("OrderedDict argument is a \(first.kind)") }
                for item in l.items {
                    guard case .tuple(let pair) = item, case let kv = pair.items, kv.count == 2 else { throw fail("OrderedDict item is not a pair") }
                    d.set(kv[0], kv[1])
                }
            }
            return .dict(d)
        case "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2":
            return try rebuildTensor(args)
        case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
            guard let data = args.first, case .tensor = data else { throw fail("_rebuild_parameter without a tensor") }
            return data
        case "torch._tensor._rebuild_from_type_v2":
            // (func, type, args, state): a Tensor or Parameter rebuilt by a whitelisted function.
            guard args.count >= 3, case .global(let tm, let tn) = args[1], Self.tensorClasses.contains("\(tm).\(tn)"),
                  case .tuple(let inner) = args[2] else {
                throw fail("_rebuild_from_type_v2 with unsupported arguments")
            }
            return try call(args[0], inner.items)
        case "torch.Size":
            guard args.count == 1, case .tuple = args[0] else { throw fail("torch.Size argument is not a tuple") }
            return args[0]
        case "torch.device":
            guard let first = args.first, case .string(let kind) = first else { throw fail("torch.device argument is not a string") }
            if args.count > 1, case .int(let index) = args[1] { return .string("\(kind):\(index)") }
            return .string(kind)
        case "_codecs.encode":
            // Protocol-2 pickles write bytes as _codecs.encode(text, 'latin1').
            guard args.count == 2, case .string(let text) = args[0], case .string(let codec) = args[1],
                  ["latin1", "latin-1", "iso-8859-1"].contains(codec.lowercased()) else {
                throw fail("_codecs.encode is only supported for latin1 text")
            }
            var out: [UInt8] = []
            for u in text.unicodeScalars {
                guard u.value < 256 else { throw fail("_codecs.encode: character outside latin1") }
                out.append(UInt8(u.value))
            }
            return .bytes(out)
        case "builtins.set", "builtins.frozenset", "__builtin__.set", "__builtin__.frozenset":
            guard let first = args.first else { return .list(PickleList()) }
            switch first {
            case .list(let l): return .list(PickleList(l.items))
            case .tuple(let t): return .list(PickleList(t.items))
            default: throw fail("set argument is a \(first.kind)")
            }
        default:
            throw fail("global \(module).\(name) cannot be called")
        }
    }

    func build(_ object: PickleValue, state: PickleValue) throws -> PickleValue {
        switch object {
        // OrderedDict state is Module.state_dict()'s `_metadata` (version info); tensor state
        // carries Python attributes. Neither affects the data.
        case .dict, .tensor, .opaque: return object
        default: throw fail("BUILD on a \(object.kind) is not supported")
        }
    }
}
