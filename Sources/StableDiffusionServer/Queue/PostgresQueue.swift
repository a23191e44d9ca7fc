import Foundation
import Logging
import PostgresNIO

/// One process's connection to the shared queue (`--queue URL`): the connection pool, the LISTEN
/// connection that wakes waiters, and the maintenance every process does (the rescuer of expired leases,
/// the retention of results, the list of models live workers hold).
public final class PostgresQueue: @unchecked Sendable {
    public let url: QueueURL
    public let settings: QueueSettings
    let client: PostgresClient
    let logger: Logger
    let wakeups = QueueWakeups()
    /// The models live workers hold, refreshed from the workers table.
    let catalog = ModelCatalog(shared: nil)
    let metrics = ServerMetrics()
    private let lock = NSLock()
    private var tasks: [Task<Void, Never>] = []
    private var alive = 0

    /// Workers with a recent heartbeat (as of the last refresh).
    var aliveWorkers: Int { lock.withLock { alive } }

    private init(url: QueueURL, settings: QueueSettings, logger: Logger) {
        self.url = url
        self.settings = settings
        self.logger = logger
        // The pool's own log is quiet: its failures reach us as errors of the queries, which say what failed;
        // at warning level it also complains of queries sent in the instant before `run()` has started.
        var poolLogger = logger
        poolLogger.logLevel = .error
        client = PostgresClient(configuration: url.clientConfiguration, backgroundLogger: poolLogger)
    }

    /// Connects (retrying with backoff for up to `patience` seconds, for a database still starting),
    /// checks the schema's version, and starts the listener and the maintenance loop.
    public static func connect(_ url: QueueURL, settings: QueueSettings = QueueSettings(), logger: Logger,
                               patience: Double = 30) async throws -> PostgresQueue {
        let queue = PostgresQueue(url: url, settings: settings, logger: logger)
        queue.spawn { await queue.client.run() }
        do {
            try await queue.retrying(patience: patience) { try await QueueSchema.check(queue.client, logger: logger) }
            try? await queue.refreshModels()
        } catch {
            queue.close()
            throw error
        }
        queue.spawn { await queue.listen() }
        queue.spawn { await queue.maintain() }
        return queue
    }

    /// `sd queue migrate`: creates or upgrades the schema; returns the versions before and after.
    public static func migrate(_ url: QueueURL, logger: Logger, patience: Double = 30) async throws -> (before: Int, after: Int) {
        let queue = PostgresQueue(url: url, settings: QueueSettings(), logger: logger)
        queue.spawn { await queue.client.run() }
        defer { queue.close() }
        var result = (0, 0)
        try await queue.retrying(patience: patience) { result = try await QueueSchema.migrate(queue.client, logger: logger) }
        return result
    }

    /// Stops the listener, the maintenance loop and the connection pool.
    public func close() {
        let running = lock.withLock { () -> [Task<Void, Never>] in
            defer { tasks = [] }
            return tasks
        }
        for task in running { task.cancel() }
        wakeups.wakeAll()
    }

    private func spawn(_ work: @escaping @Sendable () async -> Void) {
        let task = Task { await work() }
        lock.withLock { tasks.append(task) }
    }

    /// Runs `work` until it succeeds, backing off up to 2 s between tries; schema errors are not retried.
    func retrying(patience: Double, _ work: () async throws -> Void) async throws {
        let deadline = Date().addingTimeInterval(patience)
        var pause = 0.1
        while true {
            do {
                return try await work()
            } catch let error as QueueError {
                throw error
            } catch {
                guard Date() < deadline, !Task.isCancelled else {
                    throw QueueError.unavailable("the queue at \(url) is unreachable: \(String(reflecting: error))")
                }
                try? await Task.sleep(nanoseconds: UInt64(pause * 1e9))
                pause = min(2, pause * 2)
            }
        }
    }

    /// Sends a wake-up on the `sd_queue` channel (`job`, `done:ID`, `cancel:ID`).
    func notify(_ payload: String) async {
        _ = try? await client.query("SELECT pg_notify('sd_queue', \(payload))", logger: logger)
    }

    /// LISTEN on a connection of its own, reconnecting with backoff; after each (re)connect everyone looks
    /// again, as notifications sent meanwhile are lost.
    private func listen() async {
        var pause = 0.25
        while !Task.isCancelled {
            let started = Date()
            do {
                try await client.withConnection { conn in
                    try await conn.listen(on: "sd_queue") { notes in
                        self.wakeups.wakeAll()
                        for try await note in notes { self.wakeups.deliver(note.payload) }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("queue listener lost its connection; reconnecting", metadata: ["error": "\(error)"])
            }
            // A connection that lasted a while starts the backoff over.
            if Date().timeIntervalSince(started) > 10 { pause = 0.25 }
            try? await Task.sleep(nanoseconds: UInt64(pause * 1e9))
            pause = min(5, pause * 2)
        }
    }

    /// Every process rescues expired leases, refreshes the live models and, now and then, deletes old results.
    private func maintain() async {
        var lastPurge = Date.distantPast
        while !Task.isCancelled {
            do {
                try await rescue()
                try await refreshModels()
                try await countJobs()
                if Date().timeIntervalSince(lastPurge) > 30 {
                    try await purge()
                    lastPurge = Date()
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("queue maintenance failed; retrying", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(nanoseconds: UInt64(min(settings.pollSeconds, settings.leaseSeconds / 2) * 1e9))
        }
    }

    /// Requeues the running jobs whose lease ran out (their worker died or lost the database), or fails
    /// them once they used `max_attempts`. The next claim runs them with attempt + 1, so the old worker's
    /// late writes no longer pass the fence.
    package func rescue() async throws {
        let rows = try await client.query("""
            UPDATE sd_jobs SET
                state = CASE WHEN attempt >= max_attempts THEN 'failed' ELSE 'queued' END,
                error = CASE WHEN attempt >= max_attempts
                             THEN 'the job was tried ' || attempt || ' times and each time its worker stopped answering (lease expired)'
                             ELSE error END,
                error_status = CASE WHEN attempt >= max_attempts THEN 500 ELSE error_status END,
                finished_at = CASE WHEN attempt >= max_attempts THEN now() ELSE NULL END,
                lease_expires_at = NULL
            WHERE state = 'running' AND lease_expires_at < now()
            RETURNING id, state, worker
            """, logger: logger)
        for try await (id, state, worker) in rows.decode((Int64, String, String?).self) {
            metrics.leaseExpiries.increment()
            logger.warning("job's lease expired", metadata: ["job": "\(id)", "worker": "\(worker ?? "?")", "now": "\(state)"])
            if state == "queued" {
                metrics.retries.increment()
                await notify("job")
            } else {
                await notify("done:\(id)")
            }
        }
    }

    /// The models of the workers whose heartbeat is recent.
    func refreshModels() async throws {
        let rows = try await client.query("""
            SELECT models::text FROM sd_workers WHERE heartbeat_at > now() - make_interval(secs => \(settings.leaseSeconds))
            """, logger: logger)
        var models: [String: ModelDescriptor] = [:]
        var alive = 0
        for try await json in rows.decode(String.self) {
            alive += 1
            for m in (try? JSONDecoder().decode([ModelDescriptor].self, from: Data(json.utf8))) ?? [] where models[m.name] == nil {
                models[m.name] = m
            }
        }
        metrics.workersAlive.set(Double(alive))
        lock.withLock { self.alive = alive }
        catalog.update(models.values.sorted { $0.name < $1.name })
    }

    /// Jobs by state and the queue's depth per model, for /metrics.
    private func countJobs() async throws {
        var byState: [String: Int] = [:]
        var depth: [String: Int] = [:]
        let rows = try await client.query("SELECT state, model, count(*)::bigint FROM sd_jobs GROUP BY state, model", logger: logger)
        for try await (state, model, n) in rows.decode((String, String, Int64).self) {
            byState[state, default: 0] += Int(n)
            if state == "queued" { depth[model, default: 0] += Int(n) }
        }
        for state in ["queued", "running", "succeeded", "failed", "cancelled"] { metrics.jobsInState(state).set(Double(byState[state] ?? 0)) }
        for model in Set(depth.keys).union(catalog.all.map(\.name)) { metrics.queueDepth(model: model).set(Double(depth[model] ?? 0)) }
    }

    /// Pictures fetched more than `retentionSeconds` ago, jobs ended more than a day ago, workers silent for an
    /// hour, expired files.
    private func purge() async throws {
        try await client.query("""
            DELETE FROM sd_job_images WHERE job_id IN (
                SELECT id FROM sd_jobs WHERE fetched_at < now() - make_interval(secs => \(settings.retentionSeconds)))
            """, logger: logger)
        try await client.query("""
            DELETE FROM sd_jobs WHERE state IN ('succeeded', 'failed', 'cancelled') AND finished_at < now() - interval '1 day'
            """, logger: logger)
        try await client.query("DELETE FROM sd_workers WHERE heartbeat_at < now() - interval '1 hour'", logger: logger)
        try await client.query("DELETE FROM sd_files WHERE expires_at < now()", logger: logger)
    }
}
