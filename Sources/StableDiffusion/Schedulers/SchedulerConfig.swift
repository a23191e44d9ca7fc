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

    /// Keys listed in `_use_default_values` are dropped, as diffusers' `extract_init_dict` drops them: they
    /// were never set, only filled with the saving class's defaults, so the class made from this config
    /// uses its own defaults instead (Euler's `linspace`, not PNDM's `leading`).
    public init(values: [String: JSONValue] = [:], source: String = "scheduler_config.json") {
        self.values = ConfigDefaults.droppingUsedDefaults(values)
        self.source = source
    }

    public init(jsonData: Data, source: String) throws {
        let decoded: JSONValue
        do { decoded = try JSONParser.parse(jsonData) } catch {
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

    /// The value of `key`; nil when absent or JSON null. Explicit nulls mean what `None` means to diffusers,
    /// which depends on the key: the typed accessors below say how.
    func raw(_ key: String) -> JSONValue? {
        guard let v = values[key], v != .null else { return nil }
        return v
    }

    /// Whether `key` is present as JSON null (`None` in diffusers).
    func isNull(_ key: String) -> Bool { values[key] == .null }

    /// diffusers computes with numbers as given, so `None` fails there wherever it is used; refused here.
    private func refuseNull(_ key: String, _ what: String) throws {
        if isNull(key) {
            throw SchedulerError.invalidValue(file: source, key: key, detail: "null is not \(what) (diffusers fails on None here)")
        }
    }

    func double(_ key: String, _ fallback: Double) throws -> Double {
        try refuseNull(key, "a number")
        guard let v = raw(key) else { return fallback }
        guard let d = v.doubleValue else { throw SchedulerError.invalidValue(file: source, key: key, detail: "expected a number, got \(v.description)") }
        return d
    }

    /// A number whose default is None in diffusers (`sigma_min`): null is None.
    func optionalDouble(_ key: String) throws -> Double? {
        guard raw(key) != nil else { return nil }
        return try double(key, 0)
    }

    func int(_ key: String, _ fallback: Int) throws -> Int {
        try refuseNull(key, "an integer")
        guard let v = raw(key) else { return fallback }
        guard let i = v.intValue else {
            throw SchedulerError.invalidValue(file: source, key: key, detail: "expected an integer, got \(v.description)")
        }
        return i
    }

    /// A flag; null is false, as diffusers tests flags with `if flag:` and None is falsy there.
    func bool(_ key: String, _ fallback: Bool) throws -> Bool {
        if isNull(key) { return false }
        guard let v = raw(key) else { return fallback }
        guard case .bool(let b) = v else { throw SchedulerError.invalidValue(file: source, key: key, detail: "expected true or false, got \(v.description)") }
        return b
    }

    /// A flag diffusers does arithmetic with (it adds up the sigma-spacing flags), where None fails.
    func strictBool(_ key: String, _ fallback: Bool) throws -> Bool {
        try refuseNull(key, "true or false")
        return try bool(key, fallback)
    }

    /// A string restricted to `allowed`; other values are an error naming the key. Null is an error too
    /// (diffusers compares None with each choice and raises), unless `null` says what None amounts to.
    func choice(_ key: String, _ fallback: String, _ allowed: [String], null: String? = nil) throws -> String {
        if isNull(key) {
            guard let meaning = null else { throw SchedulerError.unsupported(file: source, key: key, value: "null") }
            return meaning
        }
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
    /// `strictNull`: None fails in diffusers for this flag (see `strictBool`); otherwise null is off.
    func requireOff(_ key: String, strictNull: Bool = false) throws {
        if try strictNull ? strictBool(key, false) : bool(key, false) { throw SchedulerError.unsupported(file: source, key: key, value: "true") }
    }
}
