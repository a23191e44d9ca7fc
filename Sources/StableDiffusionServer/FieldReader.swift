import Foundation
import StableDiffusion

/// Reads typed fields from a JSON object body and collects every problem, as FastAPI/pydantic report
/// them (all at once, each naming its field). A missing or null field takes its default; unknown fields
/// are ignored, as pydantic does, so clients that send more than this server uses still work.
struct FieldReader {
    let object: [String: JSONValue]
    private(set) var errors: [FieldError] = []

    init(object: [String: JSONValue]) { self.object = object }

    /// Parses a request body that must be a JSON object.
    static func parse(_ bytes: [UInt8]) throws -> FieldReader {
        let value: JSONValue
        do { value = try JSONDecoder().decode(JSONValue.self, from: Data(bytes)) } catch {
            throw APIError.validation([FieldError("", "JSON decode error: the body is not valid JSON", type: "json_invalid")])
        }
        guard let object = value.objectValue else {
            throw APIError.validation([FieldError("", "Input should be a valid dictionary or object", type: "model_attributes_type",
                                                  input: JSON(value))])
        }
        return FieldReader(object: object)
    }

    private func present(_ key: String) -> JSONValue? {
        guard let v = object[key], v != .null else { return nil }
        return v
    }

    mutating func fail(_ key: String, _ msg: String, type: String = "value_error") {
        errors.append(FieldError(key, msg, type: type, input: object[key].map(JSON.init) ?? .null))
    }

    mutating func string(_ key: String, default value: String) -> String {
        optionalString(key) ?? value
    }

    mutating func optionalString(_ key: String) -> String? {
        guard let v = present(key) else { return nil }
        guard let s = v.stringValue else { fail(key, "Input should be a valid string", type: "string_type"); return nil }
        return s
    }

    mutating func int(_ key: String, default value: Int, in range: ClosedRange<Int>) -> Int {
        guard let v = present(key) else { return value }
        guard case let i? = v.intValue, v.boolValue == nil else {
            fail(key, "Input should be a valid integer", type: "int_parsing")
            return value
        }
        if i < range.lowerBound { fail(key, "Input should be greater than or equal to \(range.lowerBound)", type: "greater_than_equal") }
        if i > range.upperBound { fail(key, "Input should be less than or equal to \(range.upperBound)", type: "less_than_equal") }
        return i
    }

    mutating func double(_ key: String, default value: Double, in range: ClosedRange<Double>) -> Double {
        guard let v = present(key) else { return value }
        guard let d = v.doubleValue, d.isFinite else { fail(key, "Input should be a valid number", type: "float_parsing"); return value }
        if d < range.lowerBound { fail(key, "Input should be greater than or equal to \(range.lowerBound)", type: "greater_than_equal") }
        if d > range.upperBound { fail(key, "Input should be less than or equal to \(range.upperBound)", type: "less_than_equal") }
        return d
    }

    /// true/false, or 0/1 (pydantic's lax booleans; A1111 clients send `inpainting_mask_invert: 0`).
    mutating func bool(_ key: String, default value: Bool) -> Bool {
        guard let v = present(key) else { return value }
        if let b = v.boolValue { return b }
        if let i = v.intValue, i == 0 || i == 1 { return i == 1 }
        fail(key, "Input should be a valid boolean", type: "bool_parsing")
        return value
    }

    mutating func stringArray(_ key: String) -> [String]? {
        guard let v = present(key) else { return nil }
        guard let a = v.arrayValue else { fail(key, "Input should be a valid list", type: "list_type"); return nil }
        var out: [String] = []
        for (i, e) in a.enumerated() {
            guard let s = e.stringValue else {
                errors.append(FieldError(key, "Input should be a valid string (item \(i))", type: "string_type", input: JSON(e)))
                return nil
            }
            out.append(s)
        }
        return out
    }

    /// A1111's seed: -1 (or absent) draws a random one; otherwise 0...2^63-1.
    mutating func seed(_ key: String = "seed") -> UInt64? {
        let s = int(key, default: -1, in: -1...Int.max)
        return s < 0 ? nil : UInt64(s)
    }

    /// Refuses a feature this engine does not have when the request turns it on (rather than
    /// silently giving another picture than asked for).
    mutating func unsupported(_ key: String, when isOn: (JSONValue) -> Bool, _ msg: String) {
        if let v = present(key), isOn(v) { fail(key, msg, type: "unsupported") }
    }

    func finish() throws {
        if !errors.isEmpty { throw APIError.validation(errors) }
    }
}
