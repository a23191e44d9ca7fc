import Foundation
import Logging
import XCTest
import StableDiffusion
import StableDiffusionServer

/// The bundled tiny models, each loaded once per test process.
enum ServerModels {
    static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Models")
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var cache: [String: ServedModel] = [:]

    static func load(_ name: String) throws -> ServedModel {
        try lock.withLock {
            if let m = cache[name] { return m }
            let m = try ServedModel.load(model: root.appendingPathComponent(name).path)
            cache[name] = m
            return m
        }
    }
}

/// A server on a free loopback port inside the test process, stopped at the end of the test.
final class TestServer: @unchecked Sendable {
    let server: StableDiffusionServer
    let port: Int
    private let task: Task<Void, any Error>

    private init(server: StableDiffusionServer, port: Int, task: Task<Void, any Error>) {
        self.server = server
        self.port = port
        self.task = task
    }

    static func start(_ model: String = "tiny-sd1", _ configure: (inout ServerConfiguration) -> Void = { _ in }) async throws -> TestServer {
        try await start(served: try ServerModels.load(model), configure)
    }

    static func start(served: ServedModel, _ configure: (inout ServerConfiguration) -> Void = { _ in }) async throws -> TestServer {
        var config = ServerConfiguration()
        config.port = 0
        configure(&config)
        var logger = Logger(label: "sd-serve-test")
        logger.logLevel = .warning
        let server = StableDiffusionServer(model: served, configuration: config, logger: logger)
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let task = Task { try await server.run(handleSignals: false) { continuation.yield($0) } }
        let port = try await withTimeout(30) { () -> Int in
            for await p in ports { return p }
            return 0
        }
        guard port > 0 else { throw XCTSkip("server did not start") }
        return TestServer(server: server, port: port, task: task)
    }

    /// Stops the server (what SIGTERM does) and waits, bounded, for it to return.
    func stop() async throws {
        await server.shutdown()
        _ = try await withTimeout(60) { _ = await self.task.result }
    }

    var base: String { "http://127.0.0.1:\(port)" }

    struct Reply {
        let status: Int
        let headers: [String: String]
        let body: Data
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        var array: [[String: Any]] { (try? JSONSerialization.jsonObject(with: body)) as? [[String: Any]] ?? [] }
        var text: String { String(decoding: body, as: UTF8.self) }
        func header(_ name: String) -> String? { headers.first { $0.key.lowercased() == name.lowercased() }?.value }
        /// A1111's info, parsed from its JSON string.
        var info: [String: Any] {
            guard let s = json["info"] as? String else { return [:] }
            return (try? JSONSerialization.jsonObject(with: Data(s.utf8))) as? [String: Any] ?? [:]
        }
        var images: [Data] { (json["images"] as? [String] ?? []).compactMap { Data(base64Encoded: $0) } }
    }

    /// One HTTP/1.1 exchange over a fresh connection (a plain socket client: URLSession on Linux waits
    /// forever on a 401 with WWW-Authenticate). The blocking I/O runs off Swift's cooperative pool.
    func request(_ method: String, _ path: String, json: Any? = nil, body: Data? = nil, headers: [String: String] = [:],
                 timeout: Double = 120) async throws -> Reply {
        var headers = headers
        var payload = body ?? Data()
        if let json {
            payload = try JSONSerialization.data(withJSONObject: json)
            headers["Content-Type"] = "application/json"
        }
        let port = self.port
        let sendHeaders = headers
        let sendBody = payload
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result {
                    try RawClient(port: port, timeout: timeout).exchange(method, path, headers: sendHeaders, body: sendBody)
                })
            }
        }
    }

    func post(_ path: String, _ json: Any, headers: [String: String] = [:]) async throws -> Reply {
        try await request("POST", path, json: json, headers: headers)
    }

    func get(_ path: String) async throws -> Reply { try await request("GET", path) }

    /// Polls /progress until `condition` holds (bounded).
    func waitForProgress(timeout: Double = 60, _ condition: ([String: Any]) -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let state = try await get("/sdapi/v1/progress").json["state"] as? [String: Any] ?? [:]
            if condition(state) { return }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        XCTFail("progress condition not reached in \(timeout) s")
    }
}

struct TimeoutError: Error {}

/// Runs `body`, failing after `seconds` (every wait in these tests is bounded).
func withTimeout<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
            throw TimeoutError()
        }
        defer { group.cancelAll() }
        guard let first = try await group.next() else { throw TimeoutError() }
        return first
    }
}

/// Test pictures: a smooth RGB pattern, and a mask whose right half is white (repaint).
enum TestImages {
    static func pattern(_ w: Int = 64, _ h: Int = 64, channels: Int = 3) -> Image {
        var px = [UInt8](repeating: 255, count: w * h * channels)
        for y in 0..<h {
            for x in 0..<w {
                let i = (y * w + x) * channels
                px[i] = UInt8((x * 255) / max(1, w - 1))
                px[i + 1] = UInt8((y * 255) / max(1, h - 1))
                px[i + 2] = UInt8(((x + y) * 127) / max(1, w + h - 2))
            }
        }
        return try! Image(width: w, height: h, channels: channels, pixels: px)
    }

    static func rightHalfMask(_ w: Int = 64, _ h: Int = 64) -> Image {
        var px = [UInt8](repeating: 0, count: w * h)
        for y in 0..<h { for x in w / 2..<w { px[y * w + x] = 255 } }
        return try! Image(width: w, height: h, channels: 1, pixels: px)
    }

    static func inverted(_ mask: Image) -> Image {
        try! Image(width: mask.width, height: mask.height, channels: 1, pixels: mask.toGrayscale().pixels.map { 255 - $0 })
    }

    static func base64(_ image: Image) -> String { Data(try! image.pngData()).base64EncodedString() }
}

/// What the library itself makes for these options: the PNG the server must return, byte for byte.
func libraryPNG(_ model: ServedModel, _ options: GenerationOptions, pipeline: String, extra: [(String, String)] = [],
                run: (GenerationOptions) throws -> GenerationResult) throws -> (png: [UInt8], image: Image, text: String) {
    let result = try run(options)
    let image = try result.rgbImages()[0]
    let info = GenerationInfotext(prompt: options.prompts[0], negativePrompt: options.negativePrompts?.first, steps: options.numInferenceSteps,
                                  sampler: result.schedulerName, guidanceScale: options.guidanceScale, seed: result.seed,
                                  width: image.width, height: image.height, model: model.name, pipeline: pipeline, extra: extra)
    return (try info.png(image), image, info.text)
}

/// PNG bytes equal (a short message instead of XCTest printing both arrays).
func assertSamePNG(_ got: Data?, _ expected: [UInt8], _ message: String = "", file: StaticString = #filePath, line: UInt = #line) {
    guard let got else { return XCTFail("no picture. \(message)", file: file, line: line) }
    if Array(got) != expected {
        XCTFail("PNG differs (\(got.count) vs \(expected.count) bytes). \(message)", file: file, line: line)
    }
}
