import Foundation
import Logging
import NIOCore
import PostgresNIO
import StableDiffusion

/// A worker's side of the shared queue: claims jobs for the models it holds (`FOR UPDATE SKIP LOCKED`,
/// priority then FIFO), keeps its lease with a heartbeat that also carries the job's progress and reads
/// its cancel and interrupt flags, and writes the outcome fenced on (job, attempt, worker).
package final class PostgresJobSource: JobSource, @unchecked Sendable {
    private let queue: PostgresQueue
    private let models: [ModelDescriptor]
    private let lock = NSLock()
    private var current: Claim?
    private var stopping = false
    private var heartbeat: Task<Void, Never>?

    private struct Claim {
        let job: Job
        let id: Int64
        let attempt: Int
        /// The client cancelled it (as opposed to this worker stopping, which gives it back to the queue).
        var cancelled = false
    }

    init(queue: PostgresQueue, models: [ModelDescriptor]) {
        self.queue = queue
        self.models = models
    }

    private var logger: Logger { queue.logger }
    private var me: String { queue.settings.name }

    /// Registers the worker (so fronts list its models) and starts its heartbeat. A live worker of the same
    /// name is refused: the fences tell runs apart by worker name.
    func start() async throws {
        var taken = false
        try await queue.retrying(patience: 30) {
            for try await _ in try await self.queue.client.query("""
                SELECT 1 FROM sd_workers WHERE name = \(self.me) AND heartbeat_at > now() - make_interval(secs => \(self.queue.settings.leaseSeconds))
                """, logger: self.logger).decode(Int.self) { taken = true }
        }
        if taken {
            throw QueueError.conflict("--name \(me): a live worker already has this name (its heartbeat is recent); give each worker its own")
        }
        try await queue.retrying(patience: 30) { try await self.register() }
        try? await queue.refreshModels()
        queue.wakeups.onCancel { [weak self] id in
            guard let self, self.lock.withLock({ self.current?.id == id }) else { return }
            Task { await self.beat() }
        }
        let interval = queue.settings.heartbeatSeconds
        heartbeat = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: UInt64(interval * 1e9))
                await self?.beat()
            }
        }
    }

    /// Stops claiming; the running job is stopped and given back to the queue (another worker runs it).
    func stop() {
        let job = lock.withLock { () -> Job? in
            stopping = true
            return current?.job
        }
        job?.cancel()
        queue.wakeups.workMayBeThere()
    }

    var isIdle: Bool { lock.withLock { current == nil } }

    func endHeartbeat() async {
        heartbeat?.cancel()
        _ = try? await queue.client.query("DELETE FROM sd_workers WHERE name = \(me)", logger: logger)
    }

    private func register() async throws {
        let json = String(decoding: try JSONEncoder().encode(models), as: UTF8.self)
        try await queue.client.query("""
            INSERT INTO sd_workers (name, models) VALUES (\(me), \(json)::jsonb)
            ON CONFLICT (name) DO UPDATE SET models = excluded.models, heartbeat_at = now()
            """, logger: logger)
    }

    // MARK: JobSource (on the worker thread)

    func next() -> Job? {
        while !lock.withLock({ stopping }) {
            switch blocking({ try await self.claim() }) {
            case .success(let job?): return job
            case .success(nil): break
            case .failure(let error): logger.warning("claim failed; retrying", metadata: ["error": "\(error)"])
            }
            queue.wakeups.waitForWork(seconds: queue.settings.pollSeconds)
        }
        return nil
    }

    func finished(_ job: Job, _ result: Result<GenerationOutput, any Error>, seconds: Double) {
        guard let claim = lock.withLock({ current }), claim.job === job else { return }
        let giveBack = lock.withLock { stopping } && !claim.cancelled
        // Retried while the database is away; the heartbeat keeps the lease meanwhile. If the lease is lost
        // the fence refuses the write and the re-run's outcome stands.
        let deadline = Date().addingTimeInterval(max(30, queue.settings.leaseSeconds))
        while true {
            let outcome = blocking { giveBack ? try await self.release(claim) : try await self.record(claim, result) }
            switch outcome {
            case .success(true):
                break
            case .success(false):
                logger.warning("lease lost: this run's outcome is dropped", metadata: ["job": "\(claim.id)", "attempt": "\(claim.attempt)"])
            case .failure(let error):
                if Date() < deadline {
                    logger.warning("cannot record a job's outcome; retrying", metadata: ["job": "\(claim.id)", "error": "\(error)"])
                    Thread.sleep(forTimeInterval: 1)
                    continue
                }
            }
            break
        }
        lock.withLock { current = nil }
        blockingNotify(giveBack ? "job" : "done:\(claim.id)")
    }

    // MARK: Database work

    private func claim() async throws -> Job? {
        let names = models.map(\.name)
        let rows = try await queue.client.query("""
            UPDATE sd_jobs SET state = 'running', attempt = attempt + 1, worker = \(me),
                lease_expires_at = now() + make_interval(secs => \(queue.settings.leaseSeconds)), started_at = now(),
                progress_image = 0, progress_step = 0, progress_total = 0, interrupt_requested = false
            WHERE id = (SELECT id FROM sd_jobs WHERE state = 'queued' AND model = ANY(\(names))
                        ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED)
            RETURNING id, attempt, request::text, cancel_requested, extract(epoch FROM now() - created_at)::float8
            """, logger: logger)
        for try await (id, attempt, json, cancelRequested, waited) in rows.decode((Int64, Int, String, Bool, Double).self) {
            queue.metrics.claimWaitSeconds.record(waited)
            let request: GenerationRequest
            do {
                request = try JSONDecoder().decode(GenerationRequest.self, from: Data(json.utf8))
            } catch {
                let job = Job(request: GenerationRequest(task: .txt2img, prompt: "", steps: 1, guidanceScale: 0, seed: 0, count: 0))
                _ = try await record(Claim(job: job, id: id, attempt: attempt), .failure(APIError.status(.internalServerError, "the job's request cannot be read: \(error)")))
                await queue.notify("done:\(id)")
                return nil
            }
            let job = Job(request: request)
            if cancelRequested { job.cancel() }
            lock.withLock { current = Claim(job: job, id: id, attempt: attempt, cancelled: cancelRequested) }
            logger.info("job claimed", metadata: ["job": "\(id)", "attempt": "\(attempt)", "model": "\(request.model ?? "")"])
            return job
        }
        return nil
    }

    /// The worker's and the job's heartbeat: renews the lease, publishes progress, and stops the job when
    /// a client cancelled or interrupted it, or when the lease was lost (another worker may run it now).
    private func beat() async {
        _ = try? await register()
        guard let claim = lock.withLock({ current }) else { return }
        let p = claim.job.snapshot
        // The live preview (the decoded one with --preview-vae, else the cheap linear one), for /progress anywhere.
        let preview = claim.job.preview()
        do {
            var flags: (Bool, Bool)?
            for try await f in try await queue.client.query("""
                UPDATE sd_jobs SET lease_expires_at = now() + make_interval(secs => \(queue.settings.leaseSeconds)),
                    progress_image = \(p.image), progress_step = \(p.step), progress_total = \(p.steps),
                    preview = \(preview.map { ByteBuffer(bytes: $0.png) }), preview_id = \(preview?.id)
                WHERE id = \(claim.id) AND attempt = \(claim.attempt) AND worker = \(me) AND state = 'running'
                RETURNING cancel_requested, interrupt_requested
                """, logger: logger).decode((Bool, Bool).self) { flags = f }
            guard let (cancel, interrupt) = flags else {
                logger.warning("lease lost; stopping the job", metadata: ["job": "\(claim.id)"])
                claim.job.cancel()
                return
            }
            if cancel {
                lock.withLock { if current?.id == claim.id { current?.cancelled = true } }
                claim.job.cancel()
            }
            if interrupt { claim.job.interruption.interrupt() }
        } catch {
            logger.warning("heartbeat failed", metadata: ["job": "\(claim.id)", "error": "\(error)"])
        }
    }

    /// Writes the outcome and the pictures in one transaction, only if this run still holds the job.
    private func record(_ claim: Claim, _ result: Result<GenerationOutput, any Error>) async throws -> Bool {
        var state = "succeeded", error: String?, status: Int?, field: String?
        var output = GenerationOutput()
        switch result {
        case .success(let o):
            output = o
            if claim.job.isCancelled { state = "cancelled" }
        case .failure(APIError.cancelled):
            state = "cancelled"
        case .failure(let e):
            state = claim.job.isCancelled ? "cancelled" : "failed"
            let described = Self.describe(e)
            status = described.0
            field = described.1
            error = described.2
        }
        let images = output.images
        let (interrupted, schedulerClass) = (state == "succeeded" && output.interrupted, output.schedulerClass)
        return try await queue.client.withTransaction(logger: logger) { conn in
            var held = false
            for try await _ in try await conn.query("""
                UPDATE sd_jobs SET state = \(state), error = \(error), error_status = \(status), error_field = \(field),
                    interrupted = \(interrupted), scheduler_class = \(schedulerClass), finished_at = now(), lease_expires_at = NULL,
                    progress_step = progress_total, preview = NULL
                WHERE id = \(claim.id) AND attempt = \(claim.attempt) AND worker = \(me) AND state = 'running'
                RETURNING id
                """, logger: logger).decode(Int64.self) { held = true }
            guard held else { return false }
            for (i, image) in images.enumerated() {
                try await conn.query("""
                    INSERT INTO sd_job_images (job_id, idx, png, seed, infotext, width, height)
                    VALUES (\(claim.id), \(i), \(ByteBuffer(bytes: image.png)), \(Int64(bitPattern: image.seed)), \(image.infotext), \(image.width), \(image.height))
                    """, logger: logger)
            }
            return true
        }
    }

    /// A stopping worker's job goes back to the queue without costing an attempt.
    private func release(_ claim: Claim) async throws -> Bool {
        var held = false
        for try await _ in try await queue.client.query("""
            UPDATE sd_jobs SET state = 'queued', attempt = attempt - 1, lease_expires_at = NULL, started_at = NULL
            WHERE id = \(claim.id) AND attempt = \(claim.attempt) AND worker = \(me) AND state = 'running'
            RETURNING id
            """, logger: logger).decode(Int64.self) { held = true }
        return held
    }

    /// (HTTP status, field, message) of a failure, for the front to answer as this process would have.
    static func describe(_ error: any Error) -> (Int, String?, String) {
        switch error {
        case APIError.validation(let errors):
            return (422, errors.first?.field, errors.first?.msg ?? "invalid request")
        case let e as APIError:
            return (Int(e.status.code), nil, e.message)
        case PipelineError.invalidArgument(let message):
            return (422, "", message)
        default:
            return (500, nil, "\(error)")
        }
    }

    private func blockingNotify(_ payload: String) {
        _ = blocking { await self.queue.notify(payload) }
    }

    /// Runs async database work from the (synchronous) worker thread.
    private func blocking<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) -> Result<T, any Error> {
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox<T>()
        Task {
            do { box.value = .success(try await work()) } catch { box.value = .failure(error) }
            done.signal()
        }
        done.wait()
        return box.value ?? .failure(CancellationError())
    }
}

private final class ResultBox<T>: @unchecked Sendable {
    var value: Result<T, any Error>?
}

// Test hooks (package access: the queue tests drive claims, heartbeats and fenced writes one at a time).
extension PostgresJobSource {
    /// Claims the next job as `next()` does, without running it: its id and attempt.
    package func claimForTest() async throws -> (id: Int64, attempt: Int)? {
        guard try await claim() != nil, let c = lock.withLock({ current }) else { return nil }
        return (c.id, c.attempt)
    }

    /// Records an empty success for the claimed job; false when the fence refused it.
    package func completeForTest() async throws -> Bool {
        guard let c = lock.withLock({ current }) else { return false }
        lock.withLock { current = nil }
        return try await record(c, .success(GenerationOutput()))
    }

    package func heartbeatForTest() async { await beat() }

    package convenience init(testQueue: PostgresQueue, models: [ModelDescriptor]) {
        self.init(queue: testQueue, models: models)
    }
}
