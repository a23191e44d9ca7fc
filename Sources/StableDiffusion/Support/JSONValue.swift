import Foundation

/// A parsed JSON value that keeps booleans, integers and floats apart (Foundation's
/// `JSONSerialization` bridges all three to `NSNumber`, which makes strict config checking unreliable).
public enum JSONValue: Decodable, Equatable, Sendable, CustomStringConvertible {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    /// Parses `data` as Python's `json` does (NaN and +-Infinity included); the error names `file`.
    public static func parse(_ data: Data, file: String) throws -> JSONValue {
        do { return try JSONParser.parse(data) } catch {
            throw ModelConfigError(file: file, key: "", reason: "malformed JSON (\(error))")
        }
    }

    public var description: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return String(b)
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .string(let s): return "\"\(s)\""
        case .array(let a): return "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .object(let o): return "{" + o.keys.sorted().map { "\"\($0)\": \(o[$0]!.description)" }.joined(separator: ", ") + "}"
        }
    }

    public var intValue: Int? { if case .int(let i) = self { return i }; if case .double(let d) = self, d == d.rounded(), abs(d) < 1e15 { return Int(d) }; return nil }
    public var doubleValue: Double? { if case .double(let d) = self { return d }; if case .int(let i) = self { return Double(i) }; return nil }
    public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var objectValue: [String: JSONValue]? { if case .object(let o) = self { return o }; return nil }
}
