import Foundation
import Hummingbird
import Logging

/// Which error dialect a path speaks: OpenAI's under /v1/, AUTOMATIC1111's elsewhere.
func errorStyle(_ path: String) -> APIError.Style { path.hasPrefix("/v1/") ? .openAI : .a1111 }

/// One structured log line per request (after it is answered), and the per-status request counter.
struct RequestLogMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let status: Int
        do {
            let response = try await next(request, context)
            status = response.status.code
            log(request, context, status: status, start: start)
            return response
        } catch {
            status = (error as? any HTTPResponseError)?.status.code ?? 500
            log(request, context, status: status, start: start)
            throw error
        }
    }

    private func log(_ request: Request, _ context: Context, status: Int, start: ContinuousClock.Instant) {
        let elapsed = ContinuousClock.now - start
        let ms = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        metrics.request(status: status)
        context.logger.info("request", metadata: [
            "method": "\(request.method.rawValue)", "path": "\(request.uri.path)", "status": "\(status)",
            "ms": "\(String(format: "%.1f", ms))",
        ])
    }
}

/// A declared Content-Length above the body limit is refused at once with 413, before any of the body is
/// read; the answer says `Connection: close`, so the connection ends and the client need not send the rest.
/// (Bodies without a length are still cut at the limit as they are read.)
struct BodyLimitMiddleware<Context: RequestContext>: RouterMiddleware {
    let limit: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let declared = request.headers[.contentLength].flatMap(Int.init), declared > limit else {
            return try await next(request, context)
        }
        var response = APIError.bodyTooLarge(limit: limit).response(errorStyle(request.uri.path))
        response.headers[.connection] = "close"
        return response
    }
}

/// HTTP Basic on every endpoint; the credentials are compared in constant time.
struct BasicAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let expected: [UInt8]

    init(credentials: String) { expected = Array(credentials.utf8) }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let header = request.headers[.authorization], header.count > 6, header.prefix(6).lowercased() == "basic ",
           let decoded = Data(base64Encoded: header.dropFirst(6).trimmingCharacters(in: .whitespaces)),
           constantTimeEqual(Array(decoded), expected) {
            return try await next(request, context)
        }
        var response = APIError.status(.unauthorized, "Incorrect username or password").response(errorStyle(request.uri.path))
        response.headers[.wwwAuthenticate] = "Basic realm=\"sd\""
        return response
    }
}

/// Compares credentials in time that depends on the lengths only, never on where the bytes differ.
func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var diff = UInt8(a.count == b.count ? 0 : 1)
    for i in 0..<max(a.count, b.count) {
        diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
    }
    return diff == 0
}
