/// Values the pickle machine builds. Lists and dicts are classes because pickles mutate them after
/// memoising (APPENDS/SETITEMS on an object fetched back with BINGET).
indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    /// Tuples are references too, so a memo-shared tuple is converted once (see `convert`).
    case tuple(PickleList)
    case list(PickleList)
    case dict(PickleDict)
    /// A module-level name, already checked against the resolver's allow-list; never executed.
    case global(module: String, name: String)
    case storage(TorchStorage)
    case tensor(TorchTensor)
    /// An object of an allowed class that is not plain data (a numpy dtype or array, a torch
    /// ParameterDict, a Lightning callback): a name, arguments and BUILD state, nothing callable.
    case object(PickleObject)

    var kind: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case .global(let m, let n): return "global \(m).\(n)"
        case .storage: return "storage"
        case .tensor: return "tensor"
        case .object(let o): return "object of \(o.type)"
        }
    }
}

/// An allowed object built in two steps, construction then BUILD. A reference, because the memo can
/// hand it out between the two (numpy pickles its dtype once and refers back to it).
final class PickleObject {
    let type: String
    let args: [PickleValue]
    var state: PickleValue?

    init(type: String, args: [PickleValue] = []) {
        self.type = type
        self.args = args
    }
}

/// A global the resolver refuses; the machine reports it with the opcode and byte that named it.
struct PickleRefusal: Error {
    let detail: String
}

final class PickleList {
    var items: [PickleValue]
    init(_ items: [PickleValue] = []) { self.items = items }
}

/// Insertion-ordered dict. Scalar keys are indexed so SETITEM replaces like Python; other keys
/// (tuples, ...) are only appended, which torch state never needs to replace.
final class PickleDict {
    private(set) var entries: [(key: PickleValue, value: PickleValue)] = []
    private var index: [Key: Int] = [:]

    private enum Key: Hashable { case none, int(Int), string(String), float(Double), bytes([UInt8]) }

    private static func key(_ v: PickleValue) -> Key? {
        switch v {
        case .none: return Key.none
        case .bool(let b): return .int(b ? 1 : 0)  // Python: True == 1 as a dict key
        case .int(let i): return .int(i)
        case .string(let s): return .string(s)
        case .float(let d): return d == d.rounded() && abs(d) < 9e18 ? .int(Int(d)) : .float(d)
        case .bytes(let b): return .bytes(b)
        default: return nil
        }
    }

    subscript(key: String) -> PickleValue? {
        index[.string(key)].map { entries[$0].value }
    }

    func set(_ key: PickleValue, _ value: PickleValue) {
        if let k = Self.key(key) {
            if let i = index[k] { entries[i].value = value; return }
            index[k] = entries.count
        }
        entries.append((key, value))
    }
}

/// What the pickle machine may not decide alone: which globals exist (throwing `PickleRefusal`
/// for the rest), what a persistent id refers to, and what calling an allowed global means.
protocol PickleResolver {
    func global(module: String, name: String) throws -> PickleValue
    func persistentLoad(_ pid: PickleValue) throws -> PickleValue
    func call(_ callable: PickleValue, _ args: [PickleValue]) throws -> PickleValue
    func build(_ object: PickleValue, state: PickleValue) throws -> PickleValue
}

/// A pickle interpreter for the opcodes `torch.save` emits (protocols 2-5, binary forms). It only
/// builds data: globals come from the resolver's allow-list, and nothing is imported or executed.
struct PickleMachine {
    let bytes: UnsafeRawBufferPointer
    /// Names the pickle in errors, e.g. "archive/data.pkl".
    let source: String
    let file: String
    let resolver: any PickleResolver

    private var pos = 0
    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [Int: PickleValue] = [:]
    private var opcodeStart = 0
    private var opcode: UInt8 = 0

    init(bytes: UnsafeRawBufferPointer, source: String, file: String, resolver: any PickleResolver) {
        self.bytes = bytes
        self.source = source
        self.file = file
        self.resolver = resolver
    }

    private func fail(_ detail: String) -> TensorError {
        .badFile(file: file, detail: "\(source): opcode \(Self.name(of: opcode)) at byte \(opcodeStart): \(detail)")
    }

    // MARK: reading the stream

    private mutating func take(_ n: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= bytes.count - pos else { throw fail("argument of \(n) bytes runs past the end of the pickle (truncated)") }
        defer { pos += n }
        return UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + n)])
    }

    private mutating func u8() throws -> Int { Int(try take(1)[0]) }

    private mutating func le<T: FixedWidthInteger>(_: T.Type) throws -> T {
        T(littleEndian: try take(MemoryLayout<T>.size).loadUnaligned(as: T.self))
    }

    /// A length that must fit in what is left of the stream.
    private mutating func length<T: FixedWidthInteger>(_: T.Type) throws -> Int {
        let n = try le(T.self)
        guard n >= 0, UInt64(n) <= UInt64(bytes.count - pos) else { throw fail("length \(n) runs past the end of the pickle (truncated)") }
        return Int(n)
    }

    private mutating func line() throws -> String {
        var end = pos
        while end < bytes.count, bytes[end] != 0x0A { end += 1 }
        guard end < bytes.count else { throw fail("unterminated text argument (truncated)") }
        let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[pos..<end]), as: UTF8.self)
        pos = end + 1
        return s
    }

    private mutating func utf8(_ n: Int) throws -> String { String(decoding: try take(n), as: UTF8.self) }

    // MARK: the stack

    /// Pops one value; like CPython, a pop may not reach below the innermost MARK.
    private mutating func pop() throws -> PickleValue {
        guard stack.count > (marks.last ?? 0), let v = stack.popLast() else { throw fail("stack underflow") }
        return v
    }

    private mutating func top() throws -> PickleValue {
        guard stack.count > (marks.last ?? 0), let v = stack.last else { throw fail("stack underflow") }
        return v
    }

    private mutating func popToMark() throws -> [PickleValue] {
        guard let m = marks.popLast(), m <= stack.count else { throw fail("no MARK on the stack") }
        let items = Array(stack[m...])
        stack.removeSubrange(m...)
        return items
    }

    private mutating func put(_ index: Int) throws {
        guard let v = stack.last else { throw fail("memoising an empty stack") }
        memo[index] = v
    }

    private func get(_ index: Int) throws -> PickleValue {
        guard let v = memo[index] else { throw fail("memo index \(index) was never stored") }
        return v
    }

    private static func integer(littleEndian raw: UnsafeRawBufferPointer) -> Int? {
        guard raw.count <= 8 else {
            // Wider encodings are fine when they are only sign extension of a 64-bit value.
            let fill: UInt8 = (raw.last ?? 0) & 0x80 != 0 ? 0xFF : 0
            guard raw[8...].allSatisfy({ $0 == fill }), (raw[7] & 0x80 != 0) == (fill == 0xFF) else { return nil }
            return integer(littleEndian: UnsafeRawBufferPointer(rebasing: raw[0..<8]))
        }
        if raw.isEmpty { return 0 }
        var v: UInt64 = 0
        for (i, b) in raw.enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        if raw.count < 8, raw[raw.count - 1] & 0x80 != 0 { v |= ~UInt64(0) << (8 * UInt64(raw.count)) }
        return Int(Int64(bitPattern: v))
    }

    // MARK: running

    mutating func run() throws -> PickleValue {
        while pos < bytes.count {
            opcodeStart = pos
            opcode = bytes[pos]
            pos += 1
            switch opcode {
            case 0x80: // PROTO
                let v = try u8()
                guard v <= 5 else { throw fail("unsupported pickle protocol \(v)") }
            case 0x95: // FRAME: framing is advisory, the opcodes follow inline.
                _ = try le(UInt64.self)
            case 0x2E: // STOP
                guard let v = stack.popLast() else { throw fail("STOP with an empty stack") }
                return v
            case 0x28: marks.append(stack.count) // MARK
            case 0x30: _ = try pop() // POP
            case 0x31: _ = try popToMark() // POP_MARK
            case 0x32: stack.append(try top()) // DUP
            case 0x4E: stack.append(.none) // NONE
            case 0x88: stack.append(.bool(true)) // NEWTRUE
            case 0x89: stack.append(.bool(false)) // NEWFALSE
            case 0x4A: stack.append(.int(Int(try le(Int32.self)))) // BININT
            case 0x4B: stack.append(.int(try u8())) // BININT1
            case 0x4D: stack.append(.int(Int(try le(UInt16.self)))) // BININT2
            case 0x8A, 0x8B: // LONG1, LONG4
                let n = opcode == 0x8A ? try u8() : try length(Int32.self)
                guard let v = Self.integer(littleEndian: try take(n)) else { throw fail("integer wider than 64 bits") }
                stack.append(.int(v))
            case 0x47: // BINFLOAT: big-endian IEEE double
                stack.append(.float(Double(bitPattern: UInt64(bigEndian: try take(8).loadUnaligned(as: UInt64.self)))))
            case 0x58: stack.append(.string(try utf8(try length(UInt32.self)))) // BINUNICODE
            case 0x8C: stack.append(.string(try utf8(try u8()))) // SHORT_BINUNICODE
            case 0x8D: stack.append(.string(try utf8(try length(UInt64.self)))) // BINUNICODE8
            case 0x54: stack.append(.string(try utf8(try length(Int32.self)))) // BINSTRING (Python 2 str)
            case 0x55: stack.append(.string(try utf8(try u8()))) // SHORT_BINSTRING
            case 0x42: stack.append(.bytes(Array(try take(try length(UInt32.self))))) // BINBYTES
            case 0x43: stack.append(.bytes(Array(try take(try u8())))) // SHORT_BINBYTES
            case 0x8E, 0x96: stack.append(.bytes(Array(try take(try length(UInt64.self))))) // BINBYTES8, BYTEARRAY8
            case 0x29: stack.append(.tuple(PickleList())) // EMPTY_TUPLE
            case 0x74: stack.append(.tuple(PickleList(try popToMark()))) // TUPLE
            case 0x85: stack.append(.tuple(PickleList([try pop()]))) // TUPLE1
            case 0x86: // TUPLE2
                let b = try pop(), a = try pop()
                stack.append(.tuple(PickleList([a, b])))
            case 0x87: // TUPLE3
                let c = try pop(), b = try pop(), a = try pop()
                stack.append(.tuple(PickleList([a, b, c])))
            case 0x5D: stack.append(.list(PickleList())) // EMPTY_LIST
            case 0x6C: stack.append(.list(PickleList(try popToMark()))) // LIST
            case 0x61: // APPEND
                let v = try pop()
                guard case .list(let l) = try top() else { throw fail("APPEND to a \(try top().kind)") }
                l.items.append(v)
            case 0x65: // APPENDS
                let items = try popToMark()
                guard case .list(let l) = try top() else { throw fail("APPENDS to a \(try top().kind)") }
                l.items += items
            case 0x7D: stack.append(.dict(PickleDict())) // EMPTY_DICT
            case 0x64: // DICT
                let items = try popToMark()
                guard items.count % 2 == 0 else { throw fail("odd number of items for a dict") }
                let d = PickleDict()
                for i in stride(from: 0, to: items.count, by: 2) { d.set(items[i], items[i + 1]) }
                stack.append(.dict(d))
            case 0x73: // SETITEM
                let v = try pop(), k = try pop()
                guard case .dict(let d) = try top() else { throw fail("SETITEM on a \(try top().kind)") }
                d.set(k, v)
            case 0x75: // SETITEMS
                let items = try popToMark()
                guard items.count % 2 == 0 else { throw fail("odd number of items for SETITEMS") }
                guard case .dict(let d) = try top() else { throw fail("SETITEMS on a \(try top().kind)") }
                for i in stride(from: 0, to: items.count, by: 2) { d.set(items[i], items[i + 1]) }
            case 0x8F: stack.append(.list(PickleList())) // EMPTY_SET: sets are kept as lists
            case 0x90: // ADDITEMS
                let items = try popToMark()
                guard case .list(let l) = try top() else { throw fail("ADDITEMS on a \(try top().kind)") }
                l.items += items
            case 0x91: stack.append(.list(PickleList(try popToMark()))) // FROZENSET
            case 0x63: // GLOBAL "module\nname\n"
                let module = try line(), name = try line()
                stack.append(try global(module, name))
            case 0x93: // STACK_GLOBAL
                let n = try pop(), m = try pop()
                guard case .string(let module) = m, case .string(let name) = n else { throw fail("STACK_GLOBAL needs two strings") }
                stack.append(try global(module, name))
            case 0x52: // REDUCE
                let args = try pop(), callable = try pop()
                guard case .tuple(let a) = args else { throw fail("REDUCE arguments are a \(args.kind), not a tuple") }
                stack.append(try resolver.call(callable, a.items))
            case 0x81: // NEWOBJ: cls.__new__(cls, *args); only allowed classes, same as a call.
                let args = try pop(), cls = try pop()
                guard case .tuple(let a) = args else { throw fail("NEWOBJ arguments are a \(args.kind), not a tuple") }
                stack.append(try resolver.call(cls, a.items))
            case 0x62: // BUILD
                let state = try pop(), object = try pop()
                stack.append(try resolver.build(object, state: state))
            case 0x51: // BINPERSID
                stack.append(try resolver.persistentLoad(try pop()))
            case 0x71: try put(try u8()) // BINPUT
            case 0x72: try put(Int(try le(UInt32.self))) // LONG_BINPUT
            case 0x94: try put(memo.count) // MEMOIZE
            case 0x68: stack.append(try get(try u8())) // BINGET
            case 0x6A: stack.append(try get(Int(try le(UInt32.self)))) // LONG_BINGET
            case 0x70: // PUT (text)
                guard let i = Int(try line()) else { throw fail("bad memo index") }
                try put(i)
            case 0x67: // GET (text)
                guard let i = Int(try line()) else { throw fail("bad memo index") }
                stack.append(try get(i))
            default:
                throw fail("unsupported opcode (torch.save never emits it; refusing rather than guessing)")
            }
        }
        opcodeStart = pos
        throw fail("pickle ends without STOP (truncated)")
    }

    /// A refused global stops the run at the opcode naming it: nothing after it is interpreted.
    private func global(_ module: String, _ name: String) throws -> PickleValue {
        do { return try resolver.global(module: module, name: name) } catch let refusal as PickleRefusal { throw fail(refusal.detail) }
    }

    static func name(of op: UInt8) -> String {
        let names: [UInt8: String] = [
            0x80: "PROTO", 0x95: "FRAME", 0x2E: "STOP", 0x28: "MARK", 0x30: "POP", 0x31: "POP_MARK", 0x32: "DUP",
            0x4E: "NONE", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x4A: "BININT", 0x4B: "BININT1", 0x4D: "BININT2",
            0x8A: "LONG1", 0x8B: "LONG4", 0x47: "BINFLOAT", 0x58: "BINUNICODE", 0x8C: "SHORT_BINUNICODE",
            0x8D: "BINUNICODE8", 0x54: "BINSTRING", 0x55: "SHORT_BINSTRING", 0x42: "BINBYTES", 0x43: "SHORT_BINBYTES",
            0x8E: "BINBYTES8", 0x96: "BYTEARRAY8", 0x29: "EMPTY_TUPLE", 0x74: "TUPLE", 0x85: "TUPLE1", 0x86: "TUPLE2",
            0x87: "TUPLE3", 0x5D: "EMPTY_LIST", 0x6C: "LIST", 0x61: "APPEND", 0x65: "APPENDS", 0x7D: "EMPTY_DICT",
            0x64: "DICT", 0x73: "SETITEM", 0x75: "SETITEMS", 0x8F: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET",
            0x63: "GLOBAL", 0x93: "STACK_GLOBAL", 0x52: "REDUCE", 0x81: "NEWOBJ", 0x92: "NEWOBJ_EX", 0x62: "BUILD",
            0x51: "BINPERSID", 0x50: "PERSID", 0x71: "BINPUT", 0x72: "LONG_BINPUT", 0x94: "MEMOIZE", 0x68: "BINGET",
            0x6A: "LONG_BINGET", 0x70: "PUT", 0x67: "GET", 0x69: "INST", 0x6F: "OBJ", 0x49: "INT", 0x4C: "LONG",
            0x46: "FLOAT", 0x53: "STRING", 0x56: "UNICODE", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4",
            0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
        ]
        let hex = "0x" + String(op, radix: 16, uppercase: true)
        return names[op].map { "\($0) (\(hex))" } ?? hex
    }
}
