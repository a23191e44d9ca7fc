import Foundation
import Logging

/// One process's bounded FIFO queue (plain `sd serve`): jobs wait here for the `GenerationWorker` thread,
/// which runs one at a time. A job submitted here carries its live `Job` in its ticket.
final class MemoryJobStore: JobStore, JobSource, @unchecked Sendable {
    let capacity: Int
    private let metrics: ServerMetrics
    private let lock = NSLock()
    private let wake = DispatchSemaphore(value: 0)
    private var pending: [Job] = []
    private var running: Job?
    private var accepting = true
    private var lastInterrupted = false
    /// Mean seconds per finished job, for Retry-After and /progress.
    private var meanSeconds = 10.0
    /// Task ids (the clients' `force_task_id`) of the latest finished jobs, oldest first, for /internal/progress.
    private var finishedTasks: [String] = []

    init(capacity: Int, metrics: ServerMetrics) {
        self.capacity = capacity
        self.metrics = metrics
    }

    /// Queues `request`, or refuses it (503) when the queue is full or the server is stopping.
    func submit(_ request: GenerationRequest) throws -> JobTicket {
        let job = Job(request: request)
        let refusal: APIError? = lock.withLock {
            guard accepting else { return .shuttingDown }
            guard pending.count < capacity else {
                let wait = meanSeconds * Double(pending.count + 1)
                return .queueFull(retryAfter: Int(min(3600, max(1, wait.rounded(.up)))))
            }
            pending.append(job)
            metrics.queueLength.set(Double(pending.count))
            return nil
        }
        if let refusal {
            metrics.jobs(.rejected).increment()
            throw refusal
        }
        wake.signal()
        return JobTicket(id: UUID().uuidString, local: job)
    }

    func wait(_ ticket: JobTicket) async -> Result<GenerationOutput, any Error> {
        guard let job = ticket.local else { return .failure(APIError.cancelled) }
        return await job.value()
    }

    func cancel(_ ticket: JobTicket) {
        guard let job = ticket.local else { return }
        job.cancel()
        let removed: Bool = lock.withLock {
            guard let i = pending.firstIndex(where: { $0 === job }) else { return false }
            pending.remove(at: i)
            metrics.queueLength.set(Double(pending.count))
            return true
        }
        if removed {
            metrics.jobs(.cancelled).increment()
            job.finish(.failure(APIError.cancelled))
        }
    }

    /// Stops the running job after its current step; the pictures it finished and the one it was drawing
    /// (its denoised estimate at that step) are returned. Queued jobs are not touched.
    func interrupt() {
        lock.withLock {
            running?.interruption.interrupt()
            if running != nil { lastInterrupted = true }
        }
    }

    /// Stops taking work, drops what waits and stops what runs.
    func shutdown() {
        let dropped: [Job] = lock.withLock {
            accepting = false
            running?.cancel()
            defer { pending = [] }
            return pending
        }
        for job in dropped {
            metrics.jobs(.cancelled).increment()
            job.finish(.failure(APIError.shuttingDown))
        }
        wake.signal()
    }

    func status(ofTask taskID: String) -> TaskStatus {
        lock.withLock {
            if let r = running, r.request.taskID == taskID { return .running(r.progress) }
            if let i = pending.firstIndex(where: { $0.request.taskID == taskID }) { return .queued(position: i + 1) }
            return finishedTasks.contains(taskID) ? .finished : .unknown
        }
    }

    func state() -> QueueState {
        lock.withLock { QueueState(running: running?.progress, queued: pending.count, interrupted: lastInterrupted, meanSeconds: meanSeconds) }
    }

    // MARK: JobSource

    func next() -> Job? {
        while true {
            wake.wait()
            let next: Job? = lock.withLock {
                guard !pending.isEmpty else { return nil }
                let job = pending.removeFirst()
                running = job
                lastInterrupted = false
                metrics.queueLength.set(Double(pending.count))
                return job
            }
            if let next { return next }
            if lock.withLock({ !accepting }) { return nil }
        }
    }

    func finished(_ job: Job, _ result: Result<GenerationOutput, any Error>, seconds: Double) {
        lock.withLock {
            running = nil
            meanSeconds = 0.8 * meanSeconds + 0.2 * seconds
            if let id = job.request.taskID {
                finishedTasks.append(id)
                if finishedTasks.count > 256 { finishedTasks.removeFirst(finishedTasks.count - 256) }
            }
        }
        job.finish(result)
    }
}
