import Foundation

/// A problem with a model's `config.json`: names the file and the key.
public struct ModelConfigError: Error, CustomStringConvertible, Equatable, Sendable {
    public let file: String
    public let key: String
    public let reason: String
    public init(file: String, key: String, reason: String) {
        self.file = file; self.key = key; self.reason = reason
    }
    public var description: String { "\(file): \(key.isEmpty ? "" : "key \"\(key)\": ")\(reason)" }
}

/// Typed, strict access to a diffusers `config.json`. Every accessor names the file and key when the
/// value has the wrong type; `finish` rejects keys that nothing consumed, so an option the engine does
/// not implement is an error rather than a silently wrong network.
public final class ConfigReader {
    public let file: String
    private var values: [String: JSONValue]
    private var consumed = Set<String>()
    /// diffusers' rules for explicit nulls (see `useDiffusersConventions`); transformers configs keep
    /// "null is the default", which their None-means-derive-it keys rely on (DPT's fusion bias).
    private var diffusersNulls = false

    public init(file: String, values: [String: JSONValue]) {
        self.file = file
        self.values = values
    }

    /// Parses JSON data (the contents of `file`).
    public convenience init(file: String, data: Data) throws {
        guard let dict = try JSONValue.parse(data, file: file).objectValue else {
            throw ModelConfigError(file: file, key: "", reason: "top level is not a JSON object")
        }
        self.init(file: file, values: dict)
    }

    /// Reads and parses `url`.
    public convenience init(contentsOf url: URL) throws {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ModelConfigError(file: url.path, key: "", reason: "cannot read file")
        }
        try self.init(file: url.path, data: data)
    }

    /// Reads the rest as diffusers' `ConfigMixin` would: keys in `_use_default_values` are dropped (the
    /// model's own defaults apply), a null flag is false (diffusers tests flags with `if flag:`), and a null
    /// for a parameter whose default is not None is an error (diffusers fails building the model with it).
    public func useDiffusersConventions() {
        values = ConfigDefaults.droppingUsedDefaults(values)
        diffusersNulls = true
    }

    /// Under diffusers' conventions, `key` given as null where diffusers needs a value.
    private func refuseNull(_ key: String) throws {
        if diffusersNulls && values[key] == .null {
            consumed.insert(key)
            throw error(key, "null is not supported here (diffusers cannot build the model with None)")
        }
    }

    public func error(_ key: String, _ reason: String) -> ModelConfigError {
        ModelConfigError(file: file, key: key, reason: reason)
    }

    /// The value, or nil when absent or JSON null.
    public func value(_ key: String) -> JSONValue? {
        consumed.insert(key)
        guard let v = values[key], v != .null else { return nil }
        return v
    }

    /// Whether the key is present with an explicit JSON null (which can differ from absent: `mid_block_type`).
    public func isExplicitNull(_ key: String) -> Bool {
        consumed.insert(key)
        return values[key] == .null
    }

    public func int(_ key: String) throws -> Int? {
        guard let v = value(key) else { return nil }
        guard let i = v.intValue else { throw error(key, "expected an integer, got \(v)") }
        return i
    }

    public func int(_ key: String, default d: Int) throws -> Int { try refuseNull(key); return try int(key) ?? d }

    public func requiredInt(_ key: String) throws -> Int {
        guard let v = try int(key) else { throw error(key, "required integer is missing") }
        return v
    }

    public func double(_ key: String) throws -> Double? {
        guard let v = value(key) else { return nil }
        guard let d = v.doubleValue else { throw error(key, "expected a number, got \(v)") }
        return d
    }

    public func double(_ key: String, default d: Double) throws -> Double { try refuseNull(key); return try double(key) ?? d }

    public func bool(_ key: String, default d: Bool) throws -> Bool {
        if diffusersNulls && values[key] == .null { consumed.insert(key); return false }
        guard let v = value(key) else { return d }
        guard let b = v.boolValue else { throw error(key, "expected true or false, got \(v)") }
        return b
    }

    public func string(_ key: String) throws -> String? {
        guard let v = value(key) else { return nil }
        guard let s = v.stringValue else { throw error(key, "expected a string, got \(v)") }
        return s
    }

    public func string(_ key: String, default d: String) throws -> String { try refuseNull(key); return try string(key) ?? d }

    public func intList(_ key: String) throws -> [Int]? {
        guard let v = value(key) else { return nil }
        guard let a = v.arrayValue, case let ints = a.compactMap(\.intValue), ints.count == a.count else {
            throw error(key, "expected a list of integers, got \(v)")
        }
        return ints
    }

    public func doubleList(_ key: String) throws -> [Double]? {
        guard let v = value(key) else { return nil }
        guard let a = v.arrayValue, case let ds = a.compactMap(\.doubleValue), ds.count == a.count else {
            throw error(key, "expected a list of numbers, got \(v)")
        }
        return ds
    }

    /// A list parameter with a default (null refused under diffusers' conventions).
    public func intList(_ key: String, default d: [Int]) throws -> [Int] { try refuseNull(key); return try intList(key) ?? d }
    public func stringList(_ key: String, default d: [String]) throws -> [String] { try refuseNull(key); return try stringList(key) ?? d }

    public func stringList(_ key: String) throws -> [String]? {
        guard let v = value(key) else { return nil }
        guard let a = v.arrayValue, case let ss = a.compactMap(\.stringValue), ss.count == a.count else {
            throw error(key, "expected a list of strings, got \(v)")
        }
        return ss
    }

    /// An int that may also be given per block as a list (e.g. `attention_head_dim`).
    public func intPerBlock(_ key: String, count: Int) throws -> [Int]? {
        guard let v = value(key) else { return nil }
        if let i = v.intValue { return [Int](repeating: i, count: count) }
        guard let list = try intList(key) else { return nil }
        guard list.count == count else { throw error(key, "has \(list.count) entries, expected \(count) (one per block)") }
        return list
    }

    public func intPerBlock(_ key: String, count: Int, default d: Int) throws -> [Int] {
        try refuseNull(key)
        return try intPerBlock(key, count: count) ?? [Int](repeating: d, count: count)
    }

    /// A bool that may also be given per block as a list (e.g. `only_cross_attention`).
    public func boolPerBlock(_ key: String, count: Int, default d: Bool) throws -> [Bool] {
        try refuseNull(key)
        guard let v = value(key) else { return [Bool](repeating: d, count: count) }
        if let b = v.boolValue { return [Bool](repeating: b, count: count) }
        guard let a = v.arrayValue, case let bs = a.compactMap(\.boolValue), bs.count == a.count else {
            throw error(key, "expected a boolean or a list of booleans, got \(v)")
        }
        guard bs.count == count else { throw error(key, "has \(bs.count) entries, expected \(count) (one per block)") }
        return bs
    }

    /// Requires `key` to be absent/null or equal to one of `allowed`: options whose other values the engine
    /// does not implement.
    public func require(_ key: String, oneOf allowed: [JSONValue], absentAllowed: Bool = true) throws {
        guard let v = value(key) else {
            if absentAllowed { return }
            throw error(key, "required value is missing")
        }
        if allowed.contains(v) { return }
        if let d = v.doubleValue, allowed.contains(where: { $0.doubleValue == d }) { return }
        throw error(key, "value \(v) is not supported (supported: \(allowed.map(\.description).joined(separator: ", ")))")
    }

    /// Largest `sample_size` accepted: pipelines multiply it by the VAE scale factor (itself at most 2^15)
    /// for their default image size, which must not overflow.
    public static let maxSampleSize = 1 << 16

    /// `sample_size`: an integer, or a list whose first entry is one (diffusers allows `[h, w]`); nil when
    /// absent or null. Shared by the UNet and the VAE configs.
    public func sampleSize() throws -> Int? {
        guard let v = value("sample_size") else { return nil }
        guard let size = v.intValue ?? v.arrayValue?.first?.intValue else {
            throw error("sample_size", "expected an integer or a list of integers")
        }
        guard size > 0, size <= Self.maxSampleSize else {
            throw error("sample_size", "must be between 1 and \(Self.maxSampleSize), got \(size)")
        }
        return size
    }

    /// Group normalization's rule, shared by every model that reads `norm_num_groups`: a positive group
    /// count that divides every block's channel count (zero used to trap on the division).
    public func requireGroups(_ key: String, _ groups: Int, divide channels: [Int]) throws {
        guard groups > 0 else { throw error(key, "must be positive, got \(groups)") }
        guard channels.allSatisfy({ $0 % groups == 0 }) else {
            throw error(key, "\(groups) does not divide every entry of block_out_channels \(channels)")
        }
    }

    /// Rejects keys present in the file that no accessor asked for, ignoring metadata keys (leading `_`)
    /// and `ignored` (keys that do not change the network, such as `sample_size`).
    public func finish(ignoring ignored: Set<String> = []) throws {
        let unknown = values.keys.filter { !$0.hasPrefix("_") && !consumed.contains($0) && !ignored.contains($0) }.sorted()
        if let first = unknown.first {
            let more = unknown.count > 1 ? "; also: \(unknown.dropFirst().joined(separator: ", "))" : ""
            throw error(first, "unknown option (this engine does not implement it)\(more)")
        }
    }
}
