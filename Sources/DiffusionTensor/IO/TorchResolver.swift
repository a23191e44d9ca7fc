/// The allow-list, one rule for every pickle the engine reads (`.ckpt`, `.pt`, `.bin`, embeddings,
/// depth maps): what each allowed global means, and how torch's persistent ids map to storages.
/// Any other global is refused at the opcode naming it.
///
/// The list is what real checkpoints carry and nothing more, after AUTOMATIC1111's safe unpickler
/// (modules/safe.py, the list the SD community's `.ckpt`/`.pt` files have been held to) and torch's
/// own `weights_only` unpickler for the tensor globals torch.save writes.
final class TorchResolver: PickleResolver {
    let zip: ZipArchive
    let prefix: String
    let path: String
    let pickleName: String
    private var storages: [String: TorchStorage] = [:]

    init(zip: ZipArchive, prefix: String, path: String, pickleName: String) {
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

    static let modelCheckpoint = "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"
    static let parameterDict = "torch.nn.modules.container.ParameterDict"

    /// Callables that only build data.
    static let functions: Set<String> = [
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
        "torch._tensor._rebuild_from_type_v2",
        "torch.Size", "torch.device",
        "_codecs.encode",
        "builtins.set", "__builtin__.set",
        // numpy 2 renamed numpy.core to numpy._core, so what it pickles names numpy._core.multiarray;
        // the same functions under the new name (numpy 1.26 reads both), so both spellings are allowed.
        "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
        "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
        "numpy.dtype",
    ]

    /// Classes built as inert objects (NEWOBJ + BUILD): their state is kept, no code of theirs runs.
    /// SD 1.x `.ckpt` files key Lightning's callback state by the ModelCheckpoint class; early
    /// textual-inversion files hold a ParameterDict.
    static let inertClasses: Set<String> = [modelCheckpoint, parameterDict]

    /// Names that may only appear as values (arguments, dict keys); they become `.opaque` names.
    static let values: Set<String> = [
        "torch.Tensor", "torch.nn.parameter.Parameter",
        "numpy.ndarray",
        "pytorch_lightning.callbacks.model_checkpoint",
        "torch.float16", "torch.float32", "torch.float64", "torch.bfloat16",
        "torch.int64", "torch.int32", "torch.int16", "torch.int8", "torch.uint8", "torch.bool",
    ]

    /// Classes that may be the type in `_rebuild_from_type_v2`.
    static let tensorClasses: Set<String> = ["torch.Tensor", "torch.nn.parameter.Parameter"]

    /// Largest expanded/overlapping view accepted (256 MiB as fp32).
    static let maxExpandedElements = 1 << 26

    static func isAllowed(module: String, name: String) -> Bool {
        let full = "\(module).\(name)"
        return functions.contains(full) || inertClasses.contains(full) || values.contains(full)
            || (module == "torch" && storageTypes[name] != nil)
    }

    private func fail(_ detail: String) -> TensorError { .badFile(file: path, detail: "\(pickleName): \(detail)") }

    func global(module: String, name: String) throws -> PickleValue {
        guard Self.isAllowed(module: module, name: name) else {
            throw PickleRefusal(detail: "refused global '\(module).\(name)': it is not on the allow-list of what checkpoints hold "
                + "(torch tensors and storages, OrderedDict, numpy scalars and arrays, Lightning's ModelCheckpoint); "
                + "torch.load would import and call it, so the file may carry a code-execution payload (nothing was executed)")
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

    func call(_ callable: PickleValue, _ args: [PickleValue]) throws -> PickleValue {
        guard case .global(let module, let name) = callable else { throw fail("calling a \(callable.kind), which is not an allowed global") }
        let full = "\(module).\(name)"
        if Self.inertClasses.contains(full) { return .object(PickleObject(type: full)) }
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
            // (func, type, args, state): a Tensor or Parameter rebuilt by an allowed function.
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
        case "builtins.set", "__builtin__.set":
            guard let first = args.first else { return .list(PickleList()) }
            switch first {
            case .list(let l): return .list(PickleList(l.items))
            case .tuple(let t): return .list(PickleList(t.items))
            default: throw fail("set argument is a \(first.kind)")
            }
        case "numpy.dtype":
            return .object(PickleObject(type: full, args: args))
        case "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar":
            return NumpyPickle.scalar(args)
        case "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct":
            // An empty array that BUILD fills; it stays a placeholder (no weights are numpy arrays).
            return .object(PickleObject(type: "numpy.ndarray"))
        default:
            throw fail("global \(full) cannot be called")
        }
    }

    func build(_ object: PickleValue, state: PickleValue) throws -> PickleValue {
        switch object {
        // OrderedDict state is Module.state_dict()'s `_metadata` (version info); tensor state
        // carries Python attributes. Neither affects the data.
        case .dict, .tensor: return object
        case .object(let o):
            o.state = state
            return object
        default: throw fail("BUILD on a \(object.kind) is not supported")
        }
    }
}
