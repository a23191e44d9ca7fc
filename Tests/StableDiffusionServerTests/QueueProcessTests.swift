import Foundation
import XCTest
import StableDiffusion
import StableDiffusionServer

/// `sd queue migrate`, `sd worker` and `sd serve --queue` as separate processes on a real PostgreSQL: the
/// picture a worker draws for a front equals the CLI's, and a worker killed mid-job loses nothing.
final class QueueProcessTests: XCTestCase {
    nonisolated(unsafe) private static var shared: TestPostgres?

    override class func tearDown() {
        shared?.stop()
        shared = nil
        super.tearDown()
    }

    private func postgres() throws -> TestPostgres {
        if let pg = Self.shared { return pg }
        let pg = try TestPostgres.start()
        Self.shared = pg
        return pg
    }

    private var modelPath: String { ServerModels.root.appendingPathComponent("tiny-sd1").path }

    private func folder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("sd-queue-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// Runs `sd` to its end (bounded) and returns (status, stdout, stderr).
    private func sd(_ arguments: [String], in folder: URL) throws -> (Int32, String, String) {
        let child = try SDChild(arguments, folder: folder, label: "run-\(UUID().uuidString.prefix(8))")
        let status = child.status(waiting: 120) ?? child.stop()
        return (status, child.output, child.errors)
    }

    /// A migrated database; the `sd queue migrate` output is checked on the way (versioned, idempotent).
    private func migratedQueue(_ pg: TestPostgres, in folder: URL) throws -> (String, String) {
        let db = try pg.createDatabase()
        let url = pg.url(database: db)
        let first = try sd(["queue", "migrate", "--queue", url], in: folder)
        XCTAssertEqual(first.0, 0, first.2)
        XCTAssertTrue(first.1.contains("from version 0 to"), first.1)
        let again = try sd(["queue", "migrate", "--queue", url], in: folder)
        XCTAssertTrue(again.1.contains("nothing to do"), again.1)
        return (db, url)
    }

    private func startWorker(_ url: String, name: String, in folder: URL, lease: Double = 30, models: [String] = ["tiny-sd1"],
                             _ extra: [String] = []) throws -> SDChild {
        let modelFlags = models.flatMap { ["--model", ServerModels.root.appendingPathComponent($0).path] } + extra
        let w = try SDChild(["worker", "--queue", url, "--name", name, "--lease-seconds", String(lease), "--poll-seconds", "0.5"] + modelFlags,
                            folder: folder, label: name)
        addTeardownBlock { w.stop() }
        try w.waitFor("ready")
        return w
    }

    private func startFront(_ url: String, in folder: URL, name: String = "front", _ extra: [String] = []) throws -> (SDChild, Int) {
        let f = try SDChild(["serve", "--queue", url, "--port", "0", "--poll-seconds", "0.5", "--name", name] + extra,
                            folder: folder, label: name)
        addTeardownBlock { f.stop() }
        try f.waitFor("listening on")
        guard let port = f.port else { throw XCTSkip("front printed no port") }
        return (f, port)
    }

    private static func post(_ port: Int, _ path: String, _ json: [String: Any], timeout: Double = 120) async throws -> TestServer.Reply {
        let body = try JSONSerialization.data(withJSONObject: json)
        return try await withCheckedThrowingContinuation { c in
            DispatchQueue.global().async {
                c.resume(with: Result {
                    try RawClient(port: port, timeout: timeout).exchange("POST", path, headers: ["Content-Type": "application/json"], body: body)
                })
            }
        }
    }

    private static func get(_ port: Int, _ path: String) async throws -> TestServer.Reply {
        try await withCheckedThrowingContinuation { c in
            DispatchQueue.global().async {
                c.resume(with: Result { try RawClient(port: port, timeout: 30).exchange("GET", path, headers: [:], body: Data()) })
            }
        }
    }

    /// Waits (bounded) until the front lists the workers' model.
    private func waitForModel(_ port: Int, _ name: String = "tiny-sd1") async throws {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if try await Self.get(port, "/sdapi/v1/sd-models").array.contains(where: { $0["model_name"] as? String == name }) { return }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        XCTFail("the front never listed the worker's model")
    }

    /// What `sd txt2img` draws for the same options.
    private func cliPixels(seed: Int, steps: Int, side: Int, model: String = "tiny-sd1", in folder: URL) throws -> [UInt8] {
        let out = folder.appendingPathComponent("cli-\(model)-\(seed).png").path
        let r = try sd(["txt2img", "--model", ServerModels.root.appendingPathComponent(model).path, "--prompt", "a red cube", "--seed", String(seed), "--steps", String(steps),
                        "--width", String(side), "--height", String(side), "--scheduler", "euler-a", "--guidance-scale", "7",
                        "--output", out], in: folder)
        XCTAssertEqual(r.0, 0, r.2)
        return try Image.load(path: out).pixels
    }

    private static func request(seed: Int, steps: Int, side: Int) -> [String: Any] {
        ["prompt": "a red cube", "seed": seed, "steps": steps, "width": side, "height": side, "sampler_name": "Euler a", "cfg_scale": 7]
    }

    func testFrontsAndWorkersAsProcessesDrawTheCLIsPictures() async throws {
        let pg = try postgres()
        let dir = try folder()
        let (db, url) = try migratedQueue(pg, in: dir)
        // Two fronts: A only queues; B is a front with a local worker. Two workers: w1 (two models) and B's.
        _ = try startWorker(url, name: "w1", in: dir, models: ["tiny-sd1", "tiny-sd2", "tiny-sdxl"])
        // A second live worker of the same name is refused (the fences tell runs apart by name).
        let twin = try sd(["worker", "--queue", url, "--model", modelPath, "--name", "w1"], in: dir)
        XCTAssertEqual(twin.0, 1)
        XCTAssertTrue(twin.2.contains("--name w1: a live worker already has this name"), twin.2)
        let (frontA, portA) = try startFront(url, in: dir, name: "front-a")
        let (_, portB) = try startFront(url, in: dir, name: "front-b", ["--model", modelPath])
        try await waitForModel(portA)
        try await waitForModel(portA, "tiny-sd2")
        try await waitForModel(portB, "tiny-sd2")
        try await waitForModel(portA, "tiny-sdxl")
        // A worker whose --metrics-port is taken (by front A) says so and does not start.
        let taken = try sd(["worker", "--queue", url, "--model", modelPath, "--name", "w9", "--metrics-port", String(portA)], in: dir)
        XCTAssertNotEqual(taken.0, 0)
        XCTAssertTrue(taken.2.contains("--metrics-port: cannot listen on 127.0.0.1:\(portA)"), taken.2)
        let outOfRange = try sd(["worker", "--queue", url, "--model", modelPath, "--metrics-port", "70000"], in: dir)
        XCTAssertTrue(outOfRange.2.contains("--metrics-port must be 0...65535"), outOfRange.2)

        let reply = try await Self.post(portA, "/sdapi/v1/txt2img", Self.request(seed: 42, steps: 3, side: 64))
        XCTAssertEqual(reply.status, 200, reply.text)
        let picture = try Image.decode(data: reply.images.first.map { [UInt8]($0) } ?? [])
        XCTAssertEqual(picture.pixels, try cliPixels(seed: 42, steps: 3, side: 64, in: dir), "the worker's picture differs from sd txt2img's")
        XCTAssertEqual(reply.info["seed"] as? Int, 42)

        // Routed by model: only w1 holds tiny-sd2.
        var sd2 = Self.request(seed: 11, steps: 3, side: 64)
        sd2["override_settings"] = ["sd_model_checkpoint": "tiny-sd2"]
        let routed = try await Self.post(portB, "/sdapi/v1/txt2img", sd2)
        XCTAssertEqual(routed.status, 200, routed.text)
        let routedPicture = try Image.decode(data: routed.images.first.map { [UInt8]($0) } ?? [])
        XCTAssertEqual(routedPicture.pixels, try cliPixels(seed: 11, steps: 3, side: 64, model: "tiny-sd2", in: dir))

        // A request that names a model is checked against that model's defaults: SDXL's size, not A1111's 512.
        let sdxl = try ServerModels.load("tiny-sdxl").descriptor.defaultSide
        let sized = try await Self.post(portA, "/sdapi/v1/txt2img", ["prompt": "x", "steps": 1, "override_settings": ["sd_model_checkpoint": "tiny-sdxl"]])
        XCTAssertEqual(sized.status, 200, sized.text)
        XCTAssertEqual(try Image.decode(data: [UInt8](try XCTUnwrap(sized.images.first))).width, sdxl)
        XCTAssertEqual(sized.info["sd_model_name"] as? String, "tiny-sdxl")

        // OpenAI's endpoint through a front.
        let openAI = try await Self.post(portA, "/v1/images/generations", ["prompt": "a red cube", "size": "64x64", "seed": 9, "steps": 3,
                                                                           "guidance_scale": 7, "sampler_name": "Euler a"])
        XCTAssertEqual(openAI.status, 200, openAI.text)
        let b64 = ((openAI.json["data"] as? [[String: Any]])?.first?["b64_json"] as? String).flatMap { Data(base64Encoded: $0) }
        let openAIPicture = try Image.decode(data: b64.map { [UInt8]($0) } ?? [])
        XCTAssertEqual(openAIPicture.pixels, try cliPixels(seed: 9, steps: 3, side: 64, in: dir))

        // response_format=url: the file lives in the database, so the other front serves it too.
        let byURL = try await Self.post(portA, "/v1/images/generations", ["prompt": "a red cube", "size": "64x64", "seed": 9, "steps": 3,
                                                                          "guidance_scale": 7, "sampler_name": "Euler a", "response_format": "url"])
        XCTAssertEqual(byURL.status, 200, byURL.text)
        let link = ((byURL.json["data"] as? [[String: Any]])?.first?["url"] as? String) ?? ""
        let path = link.range(of: "/v1/files/").map { String(link[$0.lowerBound...]) } ?? ""
        let file = try await Self.get(portB, path)
        XCTAssertEqual(file.status, 200, "\(link): \(file.text)")
        XCTAssertEqual(try Image.decode(data: [UInt8](file.body)).pixels, openAIPicture.pixels)

        // A model no live worker holds: 422 naming it and what is available.
        var other = Self.request(seed: 1, steps: 1, side: 32)
        other["override_settings"] = ["sd_model_checkpoint": "no-such-model"]
        let refused = try await Self.post(portA, "/sdapi/v1/txt2img", other)
        XCTAssertEqual(refused.status, 422)
        XCTAssertTrue(refused.text.contains("no-such-model") && refused.text.contains("tiny-sd1"), refused.text)

        XCTAssertEqual(frontA.stop(), 0, frontA.errors.suffix(2000).description)
        XCTAssertEqual(try pg.psql("SELECT count(*) || ' ' || string_agg(DISTINCT state, ',') || ' ' || max(attempt) FROM sd_jobs", database: db),
                       "5 succeeded 1")
        XCTAssertEqual(try pg.psql("SELECT worker FROM sd_jobs WHERE model = 'tiny-sd2'", database: db), "w1")
    }

    func testAJobOfAKilledWorkerCompletesOnceOnAnotherAfterItsLeaseExpires() async throws {
        let pg = try postgres()
        let dir = try folder()
        let (db, url) = try migratedQueue(pg, in: dir)
        let doomed = try startWorker(url, name: "doomed", in: dir, lease: 2)
        let (_, port) = try startFront(url, in: dir)
        try await waitForModel(port)

        // Long enough (seconds, several heartbeats) to be caught running: 150 steps at 160 x 160.
        let pending = Task {
            try await QueueProcessTests.post(port, "/sdapi/v1/txt2img", QueueProcessTests.request(seed: 7, steps: 150, side: 160), timeout: 180)
        }
        let deadline = Date().addingTimeInterval(60)
        var running = false
        while Date() < deadline, !running {
            running = try pg.psql("SELECT count(*) FROM sd_jobs WHERE state = 'running' AND worker = 'doomed' AND progress_step > 0",
                                  database: db) == "1"
            if !running { try await Task.sleep(nanoseconds: 20_000_000) }
        }
        XCTAssertTrue(running, "the job never ran on the first worker")
        doomed.kill(SIGKILL)
        _ = doomed.status(waiting: 10)
        _ = try startWorker(url, name: "rescuer", in: dir, lease: 2)

        let reply = try await pending.value
        XCTAssertEqual(reply.status, 200, reply.text)
        let picture = try Image.decode(data: reply.images.first.map { [UInt8]($0) } ?? [])
        XCTAssertEqual(picture.pixels, try cliPixels(seed: 7, steps: 150, side: 160, in: dir))
        XCTAssertEqual(try pg.psql("SELECT state || ' ' || attempt || ' ' || worker FROM sd_jobs", database: db), "succeeded 2 rescuer")
        XCTAssertEqual(try pg.psql("SELECT count(*) FROM sd_job_images", database: db), "1")
    }

    /// Polls `sql` (bounded) until it returns `expected`.
    private func waitForSQL(_ pg: TestPostgres, _ db: String, _ sql: String, _ expected: String, timeout: Double = 30) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        var last = ""
        while Date() < deadline {
            last = try pg.psql(sql, database: db)
            if last == expected { return }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        XCTFail("\(sql): \(last), expected \(expected)")
    }

    func testCancelInterruptQueueBoundAndMetricsAcrossProcesses() async throws {
        let pg = try postgres()
        let dir = try folder()
        let (db, url) = try migratedQueue(pg, in: dir)
        let worker = try startWorker(url, name: "w1", in: dir, ["--metrics-port", "0"])
        let (_, port) = try startFront(url, in: dir, ["--queue-size", "1"])
        try await waitForModel(port)
        let long = Self.request(seed: 3, steps: 150, side: 192)
        let running = "SELECT count(*) FROM sd_jobs WHERE state = 'running' AND progress_step > 0"

        // A client that leaves cancels its job where it runs: on the worker, another process.
        let leaving = try RawClient(port: port)
        try leaving.sendJSON("/sdapi/v1/txt2img", long)
        try await waitForSQL(pg, db, running, "1")
        // /sdapi/v1/progress on the front shows the step the worker reached.
        let progress = try await Self.get(port, "/sdapi/v1/progress").json
        let state = progress["state"] as? [String: Any] ?? [:]
        XCTAssertGreaterThan(state["sampling_step"] as? Int ?? 0, 0, "\(progress)")
        XCTAssertEqual(state["sampling_steps"] as? Int, 150, "\(progress)")
        XCTAssertGreaterThan(progress["progress"] as? Double ?? 0, 0, "\(progress)")
        // And the live preview the worker's heartbeat sent (a PNG, base64).
        let preview = (progress["current_image"] as? String).flatMap { Data(base64Encoded: $0) } ?? Data()
        XCTAssertEqual(preview.prefix(4), Data([0x89, 0x50, 0x4E, 0x47]), "no live preview in /progress")
        leaving.close()
        try await waitForSQL(pg, db, "SELECT string_agg(state, ',') FROM sd_jobs", "cancelled")

        // One job running and one waiting fill --queue-size 1: the next request gets 503 with Retry-After.
        let interrupted = Task { try await QueueProcessTests.post(port, "/sdapi/v1/txt2img", QueueProcessTests.request(seed: 3, steps: 150, side: 192)) }
        try await waitForSQL(pg, db, running, "1")
        let waiting = try RawClient(port: port)
        try waiting.sendJSON("/sdapi/v1/txt2img", long)
        try await waitForSQL(pg, db, "SELECT count(*) FROM sd_jobs WHERE state = 'queued'", "1")
        let refused = try await Self.post(port, "/sdapi/v1/txt2img", Self.request(seed: 1, steps: 1, side: 32))
        XCTAssertEqual(refused.status, 503, refused.text)
        XCTAssertNotNil(refused.header("Retry-After"))
        // A waiting job whose client leaves is dropped at once.
        waiting.close()
        try await waitForSQL(pg, db, "SELECT count(*) FROM sd_jobs WHERE state = 'queued'", "0")

        // /sdapi/v1/interrupt on the front stops its job on the worker, which returns the picture it was drawing.
        let stop = try await Self.post(port, "/sdapi/v1/interrupt", [:])
        XCTAssertEqual(stop.status, 200)
        let reply = try await interrupted.value
        XCTAssertEqual(reply.status, 200, reply.text)
        XCTAssertEqual(reply.info["interrupted"] as? Bool, true, reply.text)
        XCTAssertEqual(reply.images.count, 1)
        XCTAssertEqual(try pg.psql("SELECT state || ' ' || interrupted FROM sd_jobs ORDER BY id", database: db),
                       "cancelled false\nsucceeded true\ncancelled false")

        // The front's /metrics has the queue's series (refreshed by its maintenance loop).
        let deadline = Date().addingTimeInterval(10)
        var metrics = ""
        let wanted = ["sd_queue_workers_alive 1", "sd_queue_jobs{state=\"cancelled\"} 2", "sd_queue_jobs{state=\"succeeded\"} 1",
                      "sd_queue_depth{model=\"tiny-sd1\"} 0", "sd_jobs_total{outcome=\"rejected\"} 1"]
        while Date() < deadline {
            metrics = try await Self.get(port, "/metrics").text
            if wanted.allSatisfy({ metrics.contains($0) }) { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        for w in wanted { XCTAssertTrue(metrics.contains(w), "\(w) not in /metrics:\n\(metrics)") }

        // The worker's own /metrics (--metrics-port): the two jobs it ran, both stopped early, and the queue's series.
        let line = worker.output.components(separatedBy: "metrics on http://127.0.0.1:").last ?? ""
        let workerPort = try XCTUnwrap(Int(line.prefix { $0.isNumber }), worker.output)
        let own = try await Self.get(workerPort, "/metrics").text
        for w in ["sd_jobs_total{outcome=\"cancelled\"} 2", "sd_jobs_total{outcome=\"done\"} 0", "sd_generation_seconds_count 2",
                  "sd_jobs_running 0", "sd_queue_workers_alive 1"] {
            XCTAssertTrue(own.contains(w), "\(w) not in the worker's /metrics:\n\(own)")
        }
        let elsewhere = try await Self.get(workerPort, "/sdapi/v1/txt2img")
        XCTAssertEqual(elsewhere.status, 404, "the worker's port serves only /metrics")
    }

    func testAFrontsPriorityOrdersTheSharedQueue() async throws {
        let pg = try postgres()
        let dir = try folder()
        let (db, url) = try migratedQueue(pg, in: dir)
        _ = try startWorker(url, name: "w1", in: dir)
        let (_, batch) = try startFront(url, in: dir, name: "batch")
        let (_, interactive) = try startFront(url, in: dir, name: "interactive", ["--priority", "10"])
        try await waitForModel(batch)
        try await waitForModel(interactive)

        // The worker is busy; a batch job waits, then an interactive one arrives and is claimed first.
        let long = Task { try await QueueProcessTests.post(batch, "/sdapi/v1/txt2img", QueueProcessTests.request(seed: 3, steps: 150, side: 192)) }
        try await waitForSQL(pg, db, "SELECT count(*) FROM sd_jobs WHERE state = 'running' AND progress_step > 0", "1")
        let later = Task { try await QueueProcessTests.post(batch, "/sdapi/v1/txt2img", QueueProcessTests.request(seed: 4, steps: 1, side: 32)) }
        try await waitForSQL(pg, db, "SELECT count(*) FROM sd_jobs WHERE state = 'queued'", "1")
        let urgent = Task { try await QueueProcessTests.post(interactive, "/sdapi/v1/txt2img", QueueProcessTests.request(seed: 5, steps: 1, side: 32)) }
        try await waitForSQL(pg, db, "SELECT string_agg(front || ':' || priority, ',' ORDER BY id) FROM sd_jobs WHERE state = 'queued'",
                             "batch:0,interactive:10")
        let stop = try await Self.post(batch, "/sdapi/v1/interrupt", [:])
        XCTAssertEqual(stop.status, 200)
        for task in [long, later, urgent] {
            let reply = try await task.value
            XCTAssertEqual(reply.status, 200, reply.text)
        }
        XCTAssertEqual(try pg.psql("SELECT string_agg(front, ',' ORDER BY started_at) FROM sd_jobs", database: db), "batch,interactive,batch")

        let unqueued = try sd(["serve", "--model", modelPath, "--priority", "5"], in: dir)
        XCTAssertTrue(unqueued.2.contains("--priority needs --queue"), unqueued.2)
        let outOfRange = try sd(["serve", "--queue", url, "--priority", "101"], in: dir)
        XCTAssertTrue(outOfRange.2.contains("--priority must be in -100...100"), outOfRange.2)
    }

    func testAStoppedWorkerGivesItsJobBackAndADatabaseRestartLosesNothing() async throws {
        let pg = try postgres()
        let dir = try folder()
        let (db, url) = try migratedQueue(pg, in: dir)
        let leaving = try startWorker(url, name: "leaving", in: dir)
        let (_, port) = try startFront(url, in: dir)
        try await waitForModel(port)
        let running = "SELECT count(*) FROM sd_jobs WHERE state = 'running' AND progress_step > 0"

        // SIGTERM: the worker stops its job and gives it back to the queue, without costing an attempt.
        let first = Task { try await QueueProcessTests.post(port, "/sdapi/v1/txt2img", QueueProcessTests.request(seed: 5, steps: 150, side: 192)) }
        try await waitForSQL(pg, db, running, "1")
        XCTAssertEqual(leaving.stop(), 0, leaving.errors.suffix(2000).description)
        XCTAssertEqual(try pg.psql("SELECT state || ' ' || attempt FROM sd_jobs", database: db), "queued 0")
        _ = try startWorker(url, name: "staying", in: dir)
        try await waitForSQL(pg, db, running, "1")

        // The database restarts while the job runs: the worker's writes and the front's wait carry on after it.
        try pg.restart()
        let reply = try await first.value
        XCTAssertEqual(reply.status, 200, reply.text)
        let picture = try Image.decode(data: reply.images.first.map { [UInt8]($0) } ?? [])
        XCTAssertEqual(picture.pixels, try cliPixels(seed: 5, steps: 150, side: 192, in: dir))
        XCTAssertEqual(try pg.psql("SELECT state || ' ' || attempt || ' ' || worker FROM sd_jobs", database: db), "succeeded 1 staying")
        // And after it, new work flows.
        let after = try await Self.post(port, "/sdapi/v1/txt2img", Self.request(seed: 1, steps: 1, side: 32))
        XCTAssertEqual(after.status, 200, after.text)
    }

    func testQueuedJobsOutliveAKilledFrontAndRunWithoutANotification() async throws {
        let pg = try postgres()
        let dir = try folder()
        let (db, url) = try migratedQueue(pg, in: dir)
        // A worker must be live for the front to accept the model; it is frozen (SIGSTOP), so the job waits
        // (and the front still counts it live until its heartbeat is a lease old).
        let first = try startWorker(url, name: "first", in: dir)
        let (front, port) = try startFront(url, in: dir)
        try await waitForModel(port)
        first.kill(SIGSTOP)
        defer {
            first.kill(SIGKILL)
            _ = first.status(waiting: 10)
        }
        let client = try RawClient(port: port)
        try client.sendJSON("/sdapi/v1/txt2img", Self.request(seed: 4, steps: 2, side: 32))
        try await waitForSQL(pg, db, "SELECT state FROM sd_jobs", "queued")
        front.kill(SIGKILL)
        _ = front.status(waiting: 10)
        client.close()
        _ = try startWorker(url, name: "second", in: dir)
        try await waitForSQL(pg, db, "SELECT state || ' ' || worker FROM sd_jobs", "succeeded second")
        // A job inserted by hand sends no notification: the idle worker's polling finds it.
        let request = #"{"task":{"pipeline":"txt2img"},"prompt":"x","steps":1,"guidanceScale":1,"seed":1,"count":1,"model":"tiny-sd1"}"#
        try pg.psql("INSERT INTO sd_jobs (kind, model, request) VALUES ('txt2img', 'tiny-sd1', '\(request)')", database: db)
        try await waitForSQL(pg, db, "SELECT string_agg(state || ' ' || worker, ',' ORDER BY id) FROM sd_jobs", "succeeded second,succeeded second")
        // Nobody fetched the results: they stay until retention.
        XCTAssertEqual(try pg.psql("SELECT count(*) FROM sd_job_images i JOIN sd_jobs j ON j.id = i.job_id WHERE j.fetched_at IS NULL",
                                   database: db), "2")
    }

    func testAControlNetUnitCrossesTheQueue() async throws {
        let pg = try postgres()
        let dir = try folder()
        let (_, url) = try migratedQueue(pg, in: dir)
        let controlNet = ServerModels.root.appendingPathComponent("tiny-controlnet-sd1").path
        _ = try startWorker(url, name: "w1", in: dir, ["--controlnet", controlNet])
        let (_, port) = try startFront(url, in: dir)
        try await waitForModel(port)
        // The front lists what the worker loaded, from its descriptor.
        let list = try await Self.get(port, "/controlnet/model_list").json
        XCTAssertEqual(list["model_list"] as? [String], ["tiny-controlnet-sd1"])

        let control = TestImages.pattern(80, 48)
        let reply = try await Self.post(port, "/sdapi/v1/txt2img", [
            "prompt": "a red cube", "seed": 5, "steps": 3, "width": 64, "height": 64, "sampler_name": "Euler", "cfg_scale": 7,
            "alwayson_scripts": ["ControlNet": ["args": [["enabled": true, "module": "none", "model": "tiny-controlnet-sd1",
                                                          "weight": 0.7, "image": TestImages.base64(control), "resize_mode": "Just Resize",
                                                          "guidance_end": 0.7]]]]])
        XCTAssertEqual(reply.status, 200, reply.text)
        // The library's picture for the same unit.
        let served = try ServedModel.load(model: modelPath, controlNets: [controlNet])
        var o = GenerationOptions(prompt: "a red cube")
        (o.numInferenceSteps, o.guidanceScale, o.width, o.height, o.seed, o.scheduler) = (3, 7, 64, 64, 5, "euler")
        o.controlNets = [ControlNetUnit(model: try XCTUnwrap(served.controlNets.first).model, image: control, conditioningScale: 0.7, guidanceEnd: 0.7)]
        let expected = try StableDiffusionPipeline(components: served.components)(o).rgbImages()[0].pixels
        let got = try Image.decode(data: Array(try XCTUnwrap(reply.images.first, reply.text))).pixels
        XCTAssertEqual(got, expected, "the worker's ControlNet picture differs from the library's")
    }
}
