import Foundation
import XCTest
import StableDiffusionServer

/// Authentication, CORS, and the defaults that keep a server private.
final class SecurityTests: XCTestCase {
    func testBasicAuthGuardsEveryEndpoint() async throws {
        let s = try await TestServer.start { $0.apiAuth = "alice:s3cret" }
        for path in ["/sdapi/v1/progress", "/sdapi/v1/samplers", "/metrics", "/v1/files/x/content"] {
            let r = try await s.get(path)
            XCTAssertEqual(r.status, 401, path)
            XCTAssertEqual(r.header("WWW-Authenticate"), "Basic realm=\"sd\"", path)
        }
        let wrong = "Basic " + Data("alice:wrong".utf8).base64EncodedString()
        let awaited6 = try await s.request("GET", "/sdapi/v1/progress", headers: ["Authorization": wrong]).status
        XCTAssertEqual(awaited6, 401)
        let post = try await s.post("/v1/images/generations", ["prompt": "x"])
        XCTAssertEqual(post.status, 401)
        XCTAssertNotNil(post.json["error"] as? [String: Any], "OpenAI paths answer in OpenAI's shape")
        let right = "Basic " + Data("alice:s3cret".utf8).base64EncodedString()
        let awaited7 = try await s.request("GET", "/sdapi/v1/progress", headers: ["Authorization": right]).status
        XCTAssertEqual(awaited7, 200)
        try await s.stop()
    }

    func testCORSOnlyWhenAnOriginIsGiven() async throws {
        var s = try await TestServer.start()
        var r = try await s.request("GET", "/sdapi/v1/samplers", headers: ["Origin": "http://ui.example"])
        XCTAssertNil(r.header("Access-Control-Allow-Origin"))
        try await s.stop()
        s = try await TestServer.start { $0.corsAllowOrigin = "http://ui.example" }
        r = try await s.request("GET", "/sdapi/v1/samplers", headers: ["Origin": "http://ui.example"])
        XCTAssertEqual(r.header("Access-Control-Allow-Origin"), "http://ui.example")
        r = try await s.request("OPTIONS", "/sdapi/v1/txt2img", headers: ["Origin": "http://ui.example", "Access-Control-Request-Method": "POST"])
        XCTAssertEqual(r.header("Access-Control-Allow-Origin"), "http://ui.example")
        try await s.stop()
    }

    func testDefaultsBindLoopback() {
        let c = ServerConfiguration()
        XCTAssertEqual(c.host, "127.0.0.1")
        XCTAssertNil(c.apiAuth)
        XCTAssertNil(c.corsAllowOrigin)
        XCTAssertEqual(c.queueSize, 16)
    }
}
