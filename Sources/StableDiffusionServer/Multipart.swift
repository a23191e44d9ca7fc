import Foundation

/// A minimal multipart/form-data reader for OpenAI's image edits (fields and files, in memory).
struct MultipartForm {
    struct Part {
        let name: String
        let filename: String?
        let data: [UInt8]
        var text: String? { String(bytes: data, encoding: .utf8) }
    }

    let parts: [Part]

    func first(_ names: String...) -> Part? { parts.first { names.contains($0.name) } }

    /// Parses `body` with the boundary from `contentType`; throws a 422 naming the body when malformed.
    init(body: [UInt8], contentType: String?) throws {
        guard let contentType, contentType.lowercased().hasPrefix("multipart/form-data") else {
            throw APIError.invalid("", "expected a multipart/form-data body", type: "content_type")
        }
        guard let range = contentType.range(of: "boundary=", options: .caseInsensitive) else {
            throw APIError.invalid("", "multipart/form-data without a boundary", type: "multipart")
        }
        var boundary = String(contentType[range.upperBound...])
        if let semi = boundary.firstIndex(of: ";") { boundary = String(boundary[..<semi]) }
        boundary = boundary.trimmingCharacters(in: CharacterSet(charactersIn: "\" "))
        guard !boundary.isEmpty, boundary.utf8.count <= 200 else { throw APIError.invalid("", "bad multipart boundary", type: "multipart") }
        let delimiter = Array("--\(boundary)".utf8)
        var parts: [Part] = []
        var cursor = 0
        guard let first = Self.find(delimiter, in: body, from: 0) else { throw APIError.invalid("", "no multipart parts found", type: "multipart") }
        cursor = first + delimiter.count
        while true {
            // "--" after a delimiter ends the form.
            if cursor + 2 <= body.count, body[cursor] == UInt8(ascii: "-"), body[cursor + 1] == UInt8(ascii: "-") { break }
            guard let headerEnd = Self.find(Array("\r\n\r\n".utf8), in: body, from: cursor) else {
                throw APIError.invalid("", "truncated multipart part", type: "multipart")
            }
            let headers = String(decoding: body[cursor..<headerEnd], as: UTF8.self)
            let dataStart = headerEnd + 4
            guard let next = Self.find(Array("\r\n".utf8) + delimiter, in: body, from: dataStart) else {
                throw APIError.invalid("", "truncated multipart part", type: "multipart")
            }
            guard let name = Self.attribute("name", in: headers) else {
                throw APIError.invalid("", "multipart part without a name", type: "multipart")
            }
            parts.append(Part(name: name, filename: Self.attribute("filename", in: headers), data: Array(body[dataStart..<next])))
            cursor = next + 2 + delimiter.count
            guard parts.count <= 64 else { throw APIError.invalid("", "too many multipart parts", type: "multipart") }
        }
        self.parts = parts
    }

    /// A Content-Disposition parameter (`name`, `filename`), quotes removed.
    private static func attribute(_ key: String, in headers: String) -> String? {
        for line in headers.split(separator: "\r\n") where line.lowercased().hasPrefix("content-disposition") {
            for param in line.split(separator: ";").dropFirst() {
                let kv = param.trimmingCharacters(in: .whitespaces)
                guard let eq = kv.firstIndex(of: "="), kv[..<eq].lowercased() == key else { continue }
                return kv[kv.index(after: eq)...].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
        }
        return nil
    }

    private static func find(_ needle: [UInt8], in hay: [UInt8], from start: Int) -> Int? {
        guard !needle.isEmpty, hay.count >= needle.count, start <= hay.count - needle.count else { return nil }
        let first = needle[0]
        var i = start
        let last = hay.count - needle.count
        while i <= last {
            if hay[i] == first {
                var j = 1
                while j < needle.count, hay[i + j] == needle[j] { j += 1 }
                if j == needle.count { return i }
            }
            i += 1
        }
        return nil
    }
}
