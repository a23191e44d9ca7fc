import ArgumentParser
import Foundation
import StableDiffusionServer

/// The shared queue's flags (`sd serve --queue`, `sd worker`, `sd queue migrate`); docs/SCALING.md.
struct QueueArguments: ParsableArguments {
    @Option(help: "The shared job queue: postgres://user[:password]@host[:port]/database[?sslmode=require] (default: $SD_QUEUE_URL).")
    var queue: String?

    @Option(help: "This process's name in the queue's jobs and workers tables (default: host-pid); a worker's must be unique.")
    var name: String?

    @Option(help: "Seconds a worker holds a job without a heartbeat before any process requeues it.")
    var leaseSeconds: Double = 30

    @Option(help: "Seconds between polls of the queue when no notification came (LISTEN/NOTIFY is the fast path).")
    var pollSeconds: Double = 2

    /// The URL from --queue or SD_QUEUE_URL, nil when neither is set.
    func url() throws -> QueueURL? {
        if let queue { return try QueueURL(queue, flag: "--queue") }
        if let env = ProcessInfo.processInfo.environment["SD_QUEUE_URL"], !env.isEmpty { return try QueueURL(env, flag: "SD_QUEUE_URL") }
        return nil
    }

    func settings() throws -> QueueSettings {
        guard leaseSeconds >= 1, leaseSeconds.isFinite else { throw ValidationError("--lease-seconds must be >= 1, got \(leaseSeconds)") }
        guard pollSeconds > 0, pollSeconds.isFinite else { throw ValidationError("--poll-seconds must be > 0, got \(pollSeconds)") }
        var s = QueueSettings()
        s.leaseSeconds = leaseSeconds
        // A few heartbeats per lease, so one late beat does not lose the job.
        s.heartbeatSeconds = min(1, leaseSeconds / 4)
        s.pollSeconds = pollSeconds
        if let name {
            guard !name.isEmpty, name.utf8.count <= 128 else { throw ValidationError("--name must be 1 to 128 characters") }
            s.name = name
        }
        return s
    }
}

/// Runs async work from a synchronous `run()` (main.swift runs every subcommand the same way).
func runBlocking(_ work: @escaping @Sendable () async throws -> Void) throws {
    let done = DispatchSemaphore(value: 0)
    let failure = BlockingError()
    Task {
        do { try await work() } catch { failure.set(error) }
        done.signal()
    }
    done.wait()
    if let error = failure.get() { throw error }
}

private final class BlockingError: @unchecked Sendable {
    private let lock = NSLock()
    private var error: (any Error)?
    func set(_ e: any Error) { lock.withLock { error = e } }
    func get() -> (any Error)? { lock.withLock { error } }
}
