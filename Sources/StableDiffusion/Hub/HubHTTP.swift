import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One HTTP response's status and headers (names matched case-insensitively).
struct HubHTTPResponse: Sendable {
    let url: URL
    let status: Int
    let headers: [String: String]

    init(url: URL, status: Int, headers: [String: String]) {
        self.url = url
        self.status = status
        var lower: [String: String] = [:]
        for (k, v) in headers { lower[k.lowercased()] = v }
        self.headers = lower
    }

    subscript(_ name: String) -> String? { headers[name.lowercased()] }
    var isRedirect: Bool { [301, 302, 303, 307, 308].contains(status) && self["Location"] != nil }
}

/// Transport failure (no HTTP status): refused, reset, timed out.
struct HubTransportError: Error { let detail: String }

/// A blocking request over URLSession that never follows redirects by itself (the caller decides, so the token is
/// never sent to another host) and streams the body to a callback. Each request has its own session so its
/// delegate state is private; sessions are invalidated when the request ends.
final class HubHTTPRequest: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    private let lock = NSLock()
    private let done = DispatchSemaphore(value: 0)
    private var response: HubHTTPResponse?
    private var failure: Error?
    private let onResponse: (HubHTTPResponse) throws -> Void
    private let onData: (Data) throws -> Void

    private init(onResponse: @escaping (HubHTTPResponse) throws -> Void, onData: @escaping (Data) throws -> Void) {
        self.onResponse = onResponse
        self.onData = onData
    }

    /// Sends one request; `onResponse` sees the status and headers before any body byte reaches `onData`.
    /// Errors thrown by the callbacks cancel the transfer and are rethrown here.
    static func perform(method: String, url: URL, headers: [String: String], timeout: TimeInterval,
                        onResponse: @escaping (HubHTTPResponse) throws -> Void = { _ in },
                        onData: @escaping (Data) throws -> Void = { _ in }) throws -> HubHTTPResponse {
        var request = URLRequest(url: url, cachePolicy: .reloadIgnoringLocalCacheData, timeoutInterval: timeout)
        request.httpMethod = method
        for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = timeout          // idle time between bytes, as huggingface_hub's timeout
        config.timeoutIntervalForResource = 7 * 24 * 3600   // a multi-GB file may take long in total
        config.httpShouldSetCookies = false
        config.urlCache = nil
        config.httpAdditionalHeaders = [:]
        let delegate = HubHTTPRequest(onResponse: onResponse, onData: onData)
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = 1
        let session = URLSession(configuration: config, delegate: delegate, delegateQueue: queue)
        defer { session.finishTasksAndInvalidate() }
        session.dataTask(with: request).resume()
        delegate.done.wait()   // bounded by the session's idle timeout
        delegate.lock.lock(); defer { delegate.lock.unlock() }
        if let failure = delegate.failure { throw failure }
        guard let response = delegate.response else { throw HubTransportError(detail: "no response from \(url.absoluteString)") }
        return response
    }

    private func fail(_ error: Error) {
        lock.lock(); if failure == nil { failure = error }; lock.unlock()
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
        completionHandler(nil)   // the 3xx itself becomes the response
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        guard let http = response as? HTTPURLResponse else {
            fail(HubTransportError(detail: "not an HTTP response"))
            completionHandler(.cancel)
            return
        }
        var headers: [String: String] = [:]
        for (k, v) in http.allHeaderFields { if let k = k as? String, let v = v as? String { headers[k] = v } }
        let r = HubHTTPResponse(url: http.url ?? response.url ?? URL(fileURLWithPath: "/"), status: http.statusCode, headers: headers)
        lock.lock(); self.response = r; lock.unlock()
        do { try onResponse(r); completionHandler(.allow) } catch { fail(error); completionHandler(.cancel) }
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        lock.lock(); let failed = failure != nil; lock.unlock()
        if failed { return }
        do { try onData(data) } catch { fail(error); dataTask.cancel() }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        if let error {
            let ns = error as NSError
            fail(HubTransportError(detail: ns.localizedDescription.isEmpty ? "\(ns.domain) \(ns.code)" : "\(ns.localizedDescription) (\(ns.code))"))
        }
        done.signal()
    }
}

/// huggingface_hub's origin rule: the token follows a redirect only to the same (scheme, host, port) or to a Hub
/// endpoint (huggingface.co, hf.co, HF_ENDPOINT).
enum HubOrigin {
    static func of(_ url: URL) -> String {
        let scheme = (url.scheme ?? "").lowercased()
        let port = url.port ?? (scheme == "https" ? 443 : scheme == "http" ? 80 : 0)
        return "\(scheme)://\((url.host ?? "").lowercased()):\(port)"
    }

    static func isSameOrHub(_ from: URL, _ to: URL, endpoint: URL) -> Bool {
        let hubs = ["https://huggingface.co", "https://hub-ci.huggingface.co", "https://hf.co"].compactMap(URL.init(string:)) + [endpoint]
        return ([from] + hubs).map(of).contains(of(to))
    }
}
