import Foundation
import HTTPTypes
import Logging
import PostgresNIO

/// A front's view of the shared queue: requests become rows in `sd_jobs`, and the answer is read back
/// from the row (and its pictures) once a worker finished it. Nothing lives only in this process: a
/// front that restarts loses no queued job.
final class PostgresJobStore: JobStore, @unchecked Sendable {
    private let queue: PostgresQueue
    private let capacity: Int
    private let lock = NSLock()
    private var accepting = true
    private var lastInterrupted = false
    private var meanSeconds = 10.0

    init(queue: PostgresQueue, capacity: Int) {
        self.queue = queue
        self.capacity = capacity
    }

    private var client: PostgresClient { queue.client }
    private var logger: Logger { queue.logger }
    private var me: String { queue.settings.name }

    func submit(_ request: GenerationRequest) async throws -> JobTicket {
        guard lock.withLock({ accepting }) else { throw APIError.shuttingDown }
        let catalog = queue.catalog
        let model = request.model ?? catalog.current.name
        guard catalog.all.contains(where: { $0.name == model }) else {
            throw APIError.invalid("model", "model \"\(model)\" is not held by any live worker; available: \(catalog.names)", type: "model_unavailable")
        }
        var routed = request
        routed.model = model
        let json = String(decoding: try JSONEncoder().encode(routed), as: UTF8.self)
        var id: Int64?
        do {
            // The bound and the insert in one statement; concurrent fronts may overshoot it by a few.
            let rows = try await client.query("""
                INSERT INTO sd_jobs (kind, model, request, priority, max_attempts, front, task_id)
                SELECT \(request.task.pipelineName), \(model), \(json)::jsonb, \(queue.settings.priority), \(queue.settings.maxAttempts), \(me),
                       \(request.taskID)
                WHERE (SELECT count(*) FROM sd_jobs WHERE state = 'queued') < \(capacity)
                RETURNING id
                """, logger: logger)
            for try await i in rows.decode(Int64.self) { id = i }
        } catch {
            throw Self.unreachable(error)
        }
        guard let id else {
            queue.metrics.jobs(.rejected).increment()
            let waiting = Double(capacity + 1) * lock.withLock { meanSeconds } / Double(max(1, queue.aliveWorkers))
            throw APIError.queueFull(retryAfter: Int(min(3600, max(1, waiting.rounded(.up)))))
        }
        await queue.notify("job")
        return JobTicket(id: String(id), local: nil)
    }

    func wait(_ ticket: JobTicket) async -> Result<GenerationOutput, any Error> {
        guard let id = Int64(ticket.id) else { return .failure(APIError.cancelled) }
        let submitted = Date()
        var pause = queue.settings.pollSeconds
        while true {
            if Task.isCancelled { return .failure(CancellationError()) }
            if !lock.withLock({ accepting }) { return .failure(APIError.shuttingDown) }
            do {
                if let outcome = try await outcome(id) {
                    let seconds = Date().timeIntervalSince(submitted)
                    lock.withLock { meanSeconds = 0.8 * meanSeconds + 0.2 * seconds }
                    return outcome
                }
                pause = queue.settings.pollSeconds
            } catch {
                // The database is away: keep waiting (the job is safe there), looking less often.
                logger.warning("cannot read a job's state; retrying", metadata: ["job": "\(id)", "error": "\(error)"])
                pause = min(5, pause * 2)
            }
            await queue.wakeups.waitForDone(id, seconds: pause)
        }
    }

    /// The job's outcome once it ended (its pictures marked fetched), nil while it waits or runs.
    private func outcome(_ id: Int64) async throws -> Result<GenerationOutput, any Error>? {
        var row: (String, String?, Int?, String?, Bool, String?)?
        let rows = try await client.query("""
            SELECT state, error, error_status, error_field, interrupted, scheduler_class FROM sd_jobs WHERE id = \(id)
            """, logger: logger)
        for try await r in rows.decode((String, String?, Int?, String?, Bool, String?).self) { row = r }
        guard let row else { return .failure(APIError.status(.gone, "job \(id) is no longer in the queue")) }
        let (state, error, status, field, interrupted, schedulerClass) = row
        switch state {
        case "succeeded":
            var output = GenerationOutput(images: [], schedulerClass: schedulerClass ?? "", interrupted: interrupted)
            let images = try await client.query("""
                SELECT png, seed, infotext, width, height FROM sd_job_images WHERE job_id = \(id) ORDER BY idx
                """, logger: logger)
            for try await (png, seed, info, w, h) in images.decode((Data, Int64, String, Int, Int).self) {
                output.images.append(GeneratedImage(png: [UInt8](png), seed: UInt64(bitPattern: seed), infotext: info, width: w, height: h))
            }
            try await client.query("UPDATE sd_jobs SET fetched_at = now() WHERE id = \(id)", logger: logger)
            return .success(output)
        case "cancelled":
            return .failure(APIError.cancelled)
        case "failed":
            let message = error ?? "the job failed"
            if status == 422 { return .failure(APIError.invalid(field ?? "", message)) }
            return .failure(APIError.status(HTTPResponse.Status(code: status ?? 500), message))
        default:
            return nil
        }
    }

    /// A queued job is dropped at once; a running one gets its cancel flag and a notification its worker
    /// acts on within a step.
    func cancel(_ ticket: JobTicket) {
        guard let id = Int64(ticket.id) else { return }
        let queue = self.queue
        Task {
            do {
                var dropped = false
                for try await _ in try await queue.client.query("""
                    UPDATE sd_jobs SET state = 'cancelled', finished_at = now() WHERE id = \(id) AND state = 'queued' RETURNING id
                    """, logger: queue.logger).decode(Int64.self) { dropped = true }
                if dropped {
                    queue.metrics.jobs(.cancelled).increment()
                    await queue.notify("done:\(id)")
                    return
                }
                try await queue.client.query("UPDATE sd_jobs SET cancel_requested = true WHERE id = \(id) AND state = 'running'",
                                             logger: queue.logger)
                await queue.notify("cancel:\(id)")
            } catch {
                queue.logger.warning("cannot cancel a job", metadata: ["job": "\(id)", "error": "\(error)"])
            }
        }
    }

    /// Interrupts the jobs this front submitted that are running now (A1111 has one running job per server).
    func interrupt() async {
        var ids: [Int64] = []
        do {
            for try await id in try await client.query("""
                UPDATE sd_jobs SET interrupt_requested = true WHERE state = 'running' AND front = \(me) RETURNING id
                """, logger: logger).decode(Int64.self) { ids.append(id) }
        } catch {
            logger.warning("cannot interrupt", metadata: ["error": "\(error)"])
        }
        for id in ids { await queue.notify("cancel:\(id)") }
        if !ids.isEmpty { lock.withLock { lastInterrupted = true } }
    }

    func state() async -> QueueState {
        var running: JobProgress?
        var queued = 0
        do {
            for try await (kind, count, image, step, steps, started, png, id) in try await client.query("""
                SELECT kind, (request->>'count')::integer, progress_image, progress_step, progress_total, started_at, preview, preview_id
                FROM sd_jobs WHERE state = 'running' AND front = \(me) ORDER BY started_at DESC LIMIT 1
                """, logger: logger).decode((String, Int, Int, Int, Int, Date?, Data?, Int?).self) {
                running = JobProgress(pipeline: kind, count: count, image: image, step: step, steps: steps, started: started,
                                      preview: Self.preview(png, id))
            }
            for try await n in try await client.query("SELECT count(*)::bigint FROM sd_jobs WHERE state = 'queued'", logger: logger)
                .decode(Int64.self) { queued = Int(n) }
        } catch {
            logger.warning("cannot read the queue's state", metadata: ["error": "\(error)"])
        }
        return lock.withLock { QueueState(running: running, queued: queued, interrupted: lastInterrupted, meanSeconds: meanSeconds) }
    }

    func status(ofTask taskID: String) async -> TaskStatus {
        do {
            var found: (Int64, String, String, Int, String, Int, Int, Int, Int, Date?, Data?, Int?)?
            for try await r in try await client.query("""
                SELECT id, state, model, priority, kind, (request->>'count')::integer, progress_image, progress_step, progress_total, started_at,
                    preview, preview_id
                FROM sd_jobs WHERE task_id = \(taskID) ORDER BY id DESC LIMIT 1
                """, logger: logger).decode((Int64, String, String, Int, String, Int, Int, Int, Int, Date?, Data?, Int?).self) { found = r }
            guard let found else { return .unknown }
            let (id, state, model, priority, kind, count, image, step, steps, started, png, previewID) = found
            switch state {
            case "queued":
                var ahead = 0
                for try await n in try await client.query("""
                    SELECT count(*)::bigint FROM sd_jobs WHERE state = 'queued' AND model = \(model)
                    AND (priority > \(priority) OR (priority = \(priority) AND id <= \(id)))
                    """, logger: logger).decode(Int64.self) { ahead = Int(n) }
                return .queued(position: max(1, ahead))
            case "running":
                return .running(JobProgress(pipeline: kind, count: count, image: image, step: step, steps: steps, started: started,
                                            preview: Self.preview(png, previewID)))
            default:
                return .finished
            }
        } catch {
            return .unknown
        }
    }

    /// Stops taking requests and answers the waiting ones (503); their jobs stay queued and still run.
    func shutdown() async {
        lock.withLock { accepting = false }
        queue.wakeups.wakeAll()
    }

    /// The preview the worker's heartbeat wrote, as the HTTP side reads previews.
    private static func preview(_ png: Data?, _ id: Int?) -> (@Sendable () -> (png: [UInt8], id: Int)?)? {
        guard let png, let id else { return nil }
        let bytes = [UInt8](png)
        return { (bytes, id) }
    }

    /// A database error, as the client sees it: the service is unavailable for now.
    static func unreachable(_ error: any Error) -> APIError {
        .status(.serviceUnavailable, "the job queue's database is unreachable; retry later")
    }
}
