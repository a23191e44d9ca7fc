import HTTPTypes
import Hummingbird
import StableDiffusion

/// One problem with one request field, as FastAPI reports it (`loc`, `msg`, `type`, `input`).
struct FieldError: Sendable {
    var loc: [String]
    var msg: String
    var type: String
    var input: JSON = .null

    init(_ field: String, _ msg: String, type: String = "value_error", input: JSON = .null) {
        loc = field.isEmpty ? ["body"] : ["body", field]
        self.msg = msg
        self.type = type
        self.input = input
    }

    var field: String { loc.count > 1 ? loc[1] : "body" }
}

/// Every failure a route can answer with. Rendered in the caller's dialect: AUTOMATIC1111 (FastAPI's
/// `{"detail": [...]}` for validation, `{"error", "detail", ...}` otherwise) or OpenAI (`{"error": {...}}`).
enum APIError: Error, Sendable {
    /// 422: the fields at fault.
    case validation([FieldError])
    /// Any other status with a message (400 unsupported, 404, 409 wrong model kind, 500).
    case status(HTTPResponse.Status, String)
    /// 503 with Retry-After (seconds).
    case queueFull(retryAfter: Int)
    /// 503 while the server is shutting down.
    case shuttingDown
    /// 413.
    case bodyTooLarge(limit: Int)
    /// The job was interrupted or its client went away before any picture was made.
    case cancelled

    /// 400: the client closed or reset the connection before the body it announced was complete.
    static let incompleteBody = APIError.status(.badRequest, "the request body ended before it was complete (the client closed the connection)")

    static func invalid(_ field: String, _ msg: String, type: String = "value_error", input: JSON = .null) -> APIError {
        .validation([FieldError(field, msg, type: type, input: input)])
    }

    var status: HTTPResponse.Status {
        switch self {
        case .validation: return .unprocessableContent
        case .status(let s, _): return s
        case .queueFull, .shuttingDown: return .serviceUnavailable
        case .bodyTooLarge: return .contentTooLarge
        case .cancelled: return .conflict
        }
    }

    var message: String {
        switch self {
        case .validation(let errors): return errors.map { "\($0.field): \($0.msg)" }.joined(separator: "; ")
        case .status(_, let m): return m
        case .queueFull(let s): return "the generation queue is full; retry in \(s) s"
        case .shuttingDown: return "the server is shutting down"
        case .bodyTooLarge(let limit): return "request body larger than \(limit) bytes"
        case .cancelled: return "the generation was interrupted before any picture was made"
        }
    }

    enum Style: Sendable { case a1111, openAI }

    func response(_ style: Style) -> Response {
        var headers = HTTPFields()
        if case .queueFull(let s) = self { headers[.retryAfter] = String(s) }
        if case .shuttingDown = self { headers[.retryAfter] = "30" }
        let body: JSON
        switch (style, self) {
        case (.a1111, .validation(let errors)):
            body = .object([("detail", .array(errors.map { e in
                .object([("type", .string(e.type)), ("loc", .array(e.loc.map(JSON.string))), ("msg", .string(e.msg)), ("input", e.input)])
            }))])
        case (.a1111, _):
            body = .object([("error", .string(errorName)), ("detail", .string(message)), ("body", ""), ("errors", .string(message))])
        case (.openAI, _):
            var param: JSON = .null
            if case .validation(let errors) = self, let first = errors.first { param = .string(first.field) }
            body = .object([("error", .object([("message", .string(message)), ("type", .string(openAIType)), ("param", param),
                                                ("code", .optional(openAICode))]))])
        }
        return Response.json(body, status: status, headers: headers)
    }

    private var errorName: String {
        switch self {
        case .validation: return "RequestValidationError"
        default: return "HTTPException"
        }
    }

    private var openAIType: String {
        switch self {
        case .validation, .bodyTooLarge: return "invalid_request_error"
        case .status(let s, _): return s.code < 500 ? "invalid_request_error" : "server_error"
        case .queueFull, .shuttingDown, .cancelled: return "server_error"
        }
    }

    private var openAICode: String? {
        switch self {
        case .queueFull: return "queue_full"
        case .bodyTooLarge: return "body_too_large"
        case .cancelled: return "cancelled"
        case .shuttingDown: return "shutting_down"
        default: return nil
        }
    }
}

extension Response {
    static func json(_ body: JSON, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body.bytes)))
    }
}
