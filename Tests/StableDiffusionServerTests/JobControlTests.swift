import Foundation
#if canImport(Glibc)
import Glibc
#endif
import XCTest
import StableDiffusion
import StableDiffusionServer

/// One job at a time, a bounded queue, interrupt, client disconnects and shutdown.
final class JobControlTests: XCTestCase {
    /// A job that runs for seconds whatever the build, with steps short enough to stop quickly: unoptimised
    /// builds are ~100x slower per pixel, so they get a small picture.
    static var long: [String: Any] { ["prompt": "long", "steps": 150, "width": longSide, "height": longSide, "sampler_name": "Euler", "seed": 1] }
    #if DEBUG
    static let longSide = 32
    #else
    static let longSide = 384
    #endif

    static var longImg2Img: [String: Any] {
        long.merging(["init_images": [TestImages.base64(TestImages.pattern(longSide, longSide))], "denoising_strength": 1.0]) { $1 }
    }
    static var longOpenAI: [String: Any] {
        ["prompt": "long", "size": "\(longSide)x\(longSide)", "steps": 150, "seed": 1, "response_format": "b64_json"]
    }

    func testInterruptStopsTheRunningJob() async throws {
        let s = try await TestServer.start()
        let running = Task { try await s.post("/sdapi/v1/txt2img", JobControlTests.long) }
        try await s.waitForProgress { ($0["sampling_step"] as? Int ?? 0) >= 1 }
        let p = try await s.get("/sdapi/v1/progress").json
        XCTAssertGreaterThan(p["progress"] as? Double ?? 0, 0)
        XCTAssertEqual((p["state"] as? [String: Any])?["sampling_steps"] as? Int, 150)
        let awaited8 = try await s.post("/sdapi/v1/interrupt", [:]).status
        XCTAssertEqual(awaited8, 200)
        let reply = try await withTimeout(60) { try await running.value }
        XCTAssertEqual(reply.status, 200)
        XCTAssertEqual(reply.info["interrupted"] as? Bool, true)
        // As AUTOMATIC1111: the picture it was drawing, as far as it got, with its infotext.
        XCTAssertEqual(reply.images.count, 1)
        let picture = try XCTUnwrap(reply.images.first.flatMap { try? Image.decode(data: [UInt8]($0)) })
        XCTAssertEqual([picture.width, picture.height], [Self.longSide, Self.longSide])
        XCTAssertEqual((reply.info["infotexts"] as? [String])?.count, 1)
        let state = try await s.get("/sdapi/v1/progress").json["state"] as? [String: Any]
        XCTAssertEqual(state?["interrupted"] as? Bool, true)
        let awaited9 = try await s.get("/metrics").text.contains("sd_jobs_total{outcome=\"cancelled\"} 1")
        XCTAssertTrue(awaited9)
        try await s.stop()
    }

    /// img2img and the OpenAI endpoint answer an interrupt with the picture so far too; a queued job that is
    /// never started keeps the queue's semantics (it runs after the interrupt, unaffected).
    func testInterruptReturnsThePartialPictureOnImg2ImgAndOpenAI() async throws {
        let s = try await TestServer.start()
        let running = Task { try await s.post("/sdapi/v1/img2img", JobControlTests.longImg2Img) }
        try await s.waitForProgress { ($0["sampling_step"] as? Int ?? 0) >= 1 }
        let queued = Task { try await s.post("/v1/images/generations", ["prompt": "queued", "size": "32x32", "steps": 2, "seed": 4]) }
        try await s.waitForProgress { ($0["queued"] as? Int ?? 0) == 1 }
        _ = try await s.post("/sdapi/v1/interrupt", [:])
        let reply = try await withTimeout(60) { try await running.value }
        XCTAssertEqual(reply.status, 200, reply.text)
        XCTAssertEqual(reply.info["interrupted"] as? Bool, true)
        XCTAssertEqual(reply.images.count, 1)
        let done = try await withTimeout(60) { try await queued.value }
        XCTAssertEqual(done.status, 200, done.text)
        XCTAssertEqual((done.json["data"] as? [[String: Any]])?.count, 1)
        // The OpenAI endpoint, interrupted while running: its one picture, so far.
        let openAI = Task { try await s.post("/v1/images/generations", JobControlTests.longOpenAI) }
        try await s.waitForProgress { ($0["sampling_step"] as? Int ?? 0) >= 1 }
        _ = try await s.post("/sdapi/v1/interrupt", [:])
        let partial = try await withTimeout(60) { try await openAI.value }
        XCTAssertEqual(partial.status, 200, partial.text)
        let b64 = (partial.json["data"] as? [[String: Any]])?.first?["b64_json"] as? String
        XCTAssertNotNil(b64.flatMap { Data(base64Encoded: $0) }.flatMap { try? Image.decode(data: [UInt8]($0)) })
        try await s.stop()
    }

    func testFullQueueAnswers503WithRetryAfter() async throws {
        let s = try await TestServer.start { $0.queueSize = 1 }
        let first = Task { try await s.post("/sdapi/v1/txt2img", JobControlTests.long) }
        try await s.waitForProgress { ($0["job_count"] as? Int ?? 0) == 1 }
        let second = Task { try await s.post("/v1/images/generations", ["prompt": "queued", "size": "32x32", "steps": 1]) }
        try await s.waitForProgress { ($0["queued"] as? Int ?? 0) == 1 }
        let refused = try await s.post("/sdapi/v1/txt2img", ["prompt": "x", "steps": 1, "width": 32, "height": 32])
        XCTAssertEqual(refused.status, 503, refused.text)
        XCTAssertNotNil(refused.header("Retry-After").flatMap(Int.init))
        let refusedOpenAI = try await s.post("/v1/images/generations", ["prompt": "x"])
        XCTAssertEqual(refusedOpenAI.status, 503)
        XCTAssertEqual((refusedOpenAI.json["error"] as? [String: Any])?["code"] as? String, "queue_full")
        _ = try await s.post("/sdapi/v1/interrupt", [:])
        let awaited10 = try await withTimeout(60) { try await first.value }.status
        XCTAssertEqual(awaited10, 200)
        // The queued job then runs to completion.
        let awaited11 = try await withTimeout(60) { try await second.value }.status
        XCTAssertEqual(awaited11, 200)
        let awaited12 = try await s.get("/metrics").text.contains("sd_jobs_total{outcome=\"rejected\"} 2")
        XCTAssertTrue(awaited12)
        try await s.stop()
    }

    func testClientDisconnectDropsQueuedAndCancelsRunningJobs() async throws {
        let s = try await TestServer.start()
        let running = try RawClient(port: s.port)
        try running.sendJSON("/sdapi/v1/txt2img", Self.long)
        try await s.waitForProgress { ($0["sampling_step"] as? Int ?? 0) >= 1 }
        let queued = try RawClient(port: s.port)
        try queued.sendJSON("/sdapi/v1/txt2img", Self.long)
        try await s.waitForProgress { ($0["queued"] as? Int ?? 0) == 1 }
        queued.close()
        try await s.waitForProgress { ($0["queued"] as? Int ?? 0) == 0 }
        let awaited13 = try await s.get("/sdapi/v1/progress").json["state"] as? [String: Any]
        XCTAssertEqual((awaited13)?["job_count"] as? Int, 1,
                       "the running job is not touched by another client leaving")
        running.close()
        try await s.waitForProgress { ($0["job_count"] as? Int ?? 1) == 0 }
        let metrics = try await s.get("/metrics").text
        XCTAssertTrue(metrics.contains("sd_jobs_total{outcome=\"cancelled\"} 2"), metrics)
        // And the server still generates.
        let awaited14 = try await s.post("/sdapi/v1/txt2img", ["prompt": "x", "steps": 1, "width": 32, "height": 32]).status
        XCTAssertEqual(awaited14, 200)
        try await s.stop()
    }

    func testShutdownCancelsTheRunningJobAndRefusesNewWork() async throws {
        let s = try await TestServer.start()
        let running = Task { try? await s.post("/sdapi/v1/txt2img", JobControlTests.long) }
        try await s.waitForProgress { ($0["sampling_step"] as? Int ?? 0) >= 1 }
        let start = Date()
        try await s.stop()
        XCTAssertLessThan(Date().timeIntervalSince(start), 30, "shutdown waits for one step at most, not the whole job")
        let reply = await running.value
        if let reply { XCTAssertEqual(reply.info["interrupted"] as? Bool, true, reply.text) }
        XCTAssertThrowsError(try RawClient(port: s.port), "the port is closed after shutdown")
    }
}

/// A bare TCP client: one request per connection; can hang up without reading the answer.
final class RawClient {
    private var fd: Int32
    private let port: Int

    init(port: Int, timeout: Double = 120) throws {
        self.port = port
        fd = try loopbackSocket(port: port, timeout: timeout)
    }

    func send(_ method: String, _ path: String, headers: [String: String] = [:], body: Data = Data()) throws {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\nContent-Length: \(body.count)\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        var request = Data((head + "\r\n").utf8)
        request.append(body)
        var offset = 0
        while offset < request.count {
            let n = request.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TimeoutError() }
            offset += n
        }
    }

    func sendJSON(_ path: String, _ object: Any) throws {
        try send("POST", path, headers: ["Content-Type": "application/json"], body: try JSONSerialization.data(withJSONObject: object))
    }

    /// Sends and reads the whole answer (the server closes after it: Connection: close).
    func exchange(_ method: String, _ path: String, headers: [String: String], body: Data) throws -> TestServer.Reply {
        defer { close() }
        try send(method, path, headers: headers, body: body)
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0 { throw TimeoutError() }
            if n == 0 { break }
            data.append(contentsOf: buffer[0..<n])
        }
        guard let split = data.range(of: Data("\r\n\r\n".utf8)) else { throw TimeoutError() }
        let lines = String(decoding: data[..<split.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let status = Int(lines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
        var fields: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var payload = Data(data[split.upperBound...])
        if fields.first(where: { $0.key.lowercased() == "transfer-encoding" })?.value.lowercased() == "chunked" {
            payload = Self.dechunk(payload)
        }
        return TestServer.Reply(status: status, headers: fields, body: payload)
    }

    static func dechunk(_ d: Data) -> Data {
        var out = Data()
        var i = d.startIndex
        while let lineEnd = d[i...].range(of: Data("\r\n".utf8)) {
            let size = Int(String(decoding: d[i..<lineEnd.lowerBound], as: UTF8.self).split(separator: ";").first ?? "", radix: 16) ?? 0
            if size == 0 { break }
            let start = lineEnd.upperBound
            guard start + size <= d.endIndex else { break }
            out.append(d[start..<start + size])
            i = start + size + 2
            if i >= d.endIndex { break }
        }
        return out
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    deinit { close() }
}

/// A TCP socket connected to 127.0.0.1:`port`; with `timeout`, its sends and receives give up after that long.
func loopbackSocket(port: Int, timeout: Double? = nil) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TimeoutError() }
    if let timeout {
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let ok = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard ok == 0 else { Glibc.close(fd); throw TimeoutError() }
    return fd
}
