import Foundation

/// Errors from scheduler configuration and use. Messages name the file and key, because they reach users.
public enum SchedulerError: Error, CustomStringConvertible, Equatable, Sendable {
    case badFile(file: String, detail: String)
    case unknownClass(file: String, name: String)
    case unknownName(String)
    case unsupported(file: String, key: String, value: String)
    case invalidValue(file: String, key: String, detail: String)
    case invalidUse(String)

    public var description: String {
        switch self {
        case .badFile(let file, let detail): return "\(file): \(detail)"
        case .unknownClass(let file, let name):
            return "\(file): _class_name \"\(name)\" is not a supported scheduler (supported: \(SchedulerKind.allCases.map(\.className).joined(separator: ", ")))"
        case .unknownName(let name):
            return "unknown scheduler \"\(name)\" (choose one of: \(SchedulerKind.allCases.map(\.cliName).joined(separator: " ")))"
        case .unsupported(let file, let key, let value): return "\(file): \(key) = \(value) is not supported"
        case .invalidValue(let file, let key, let detail): return "\(file): \(key): \(detail)"
        case .invalidUse(let m): return "scheduler: \(m)"
        }
    }
}

/// The contents of a `scheduler_config.json`, kept whole as diffusers' `from_config` does: each scheduler
/// reads the keys it knows (with its own defaults) and ignores the others, so a config can be handed
/// from one scheduler class to another.
public struct SchedulerConfig: Sendable, Equatable {
    public var values: [String: JSONValue]
    /// Where the config came from; named in error messages.
    public var source: String

    public init(values: [String: JSONValue] = [:], source: String = "scheduler_config.json") {
        self.values = values
        self.source = source
    }

    public init(jsonData: Data, source: String) throws {
        let decoded: JSONValue
        do { decoded = try JSONDecoder().decode(JSONValue.self, from: jsonData) } catch {
            throw SchedulerError.badFile(file: source, detail: "not valid JSON (\(error))")
        }
        guard case .object(let dict) = decoded else {
            throw SchedulerError.badFile(file: source, detail: "expected a JSON object")
        }
        self.init(values: dict, source: source)
    }

    public init(contentsOf url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw SchedulerError.badFile(file: url.path, detail: "cannot read (\(error.localizedDescription))")
        }
        try self.init(jsonData: data, source: url.path)
    }

    public var className: String? {
        if case .string(let s)? = values["_class_name"] { return s }
        return nil
    }

    /// The value of `key`, treating JSON null like an absent key (diffusers passes None = default).
    func raw(_ key: String) -> JSONValue? {
        guard let v = values[key], v != .null else { return nil }
        return v
    }

    func double(_ key: String, _ fallback: Double) throws -> Double {
        guard let v = raw(key) else { return fallback }
        guard let d = v.doubleValue else { throw SchedulerError.invalidValue(file: source, key: key, detail: "expected a number, got \(v.description)") }
        return d
    }

    func optionalDouble(_ key: String) throws -> Double? {
        guard raw(key) != nil else { return nil }
        return try double(key, 0)
    }

    func int(_ key: String, _ fallback: Int) throws -> Int {
        guard let v = raw(key) else { return fallback }
        guard let i = v.intValue else {
            throw SchedulerError.invalidValue(file: source, key: key, detail: "expected an integer, got \(v.description)")
        }
        return i
    }

    func bool(_ key: String, _ fallback: Bool) throws -> Bool {
        guard let v = raw(key) else { return fallback }
        guard case .bool(let b) = v else { throw SchedulerError.invalidValue(file: source, key: key, detail: "expected true or false, got \(v.description)") }
        return b
    }

    /// A string restricted to `allowed`; other values are an error naming the key.
    func choice(_ key: String, _ fallback: String, _ allowed: [String]) throws -> String {
        guard let v = raw(key) else { return fallback }
        guard case .string(let s) = v else { throw SchedulerError.invalidValue(file: source, key: key, detail: "expected a string, got \(v.description)") }
        guard allowed.contains(s) else { throw SchedulerError.unsupported(file: source, key: key, value: v.description) }
        return s
    }

    func doubles(_ key: String) throws -> [Double]? {
        guard let v = raw(key) else { return nil }
        guard case .array(let a) = v else { throw SchedulerError.invalidValue(file: source, key: key, detail: "expected a list of numbers") }
        return try a.map {
            guard let d = $0.doubleValue else { throw SchedulerError.invalidValue(file: source, key: key, detail: "expected a list of numbers") }
            return d
        }
    }

    /// Rejects a boolean option this engine does not implement when it is turned on.
    func requireOff(_ key: String) throws {
        if try bool(key, false) { throw SchedulerError.unsupported(file: source, key: key, value: "true") }
    }
}
