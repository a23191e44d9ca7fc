import Foundation

/// Where jobs wait and how their results come back: the seam between the HTTP side (which submits and
/// waits) and the workers (which claim and run, through `JobSource`). `MemoryJobStore` is one process's
/// queue (plain `sd serve`); `PostgresJobStore` a queue shared by fronts and workers (`--queue`).
protocol JobStore: AnyObject, Sendable {
    /// Queues `request`, or refuses it (`APIError`: 503 when full or stopping, 422 for a model no worker holds).
    func submit(_ request: GenerationRequest) async throws -> JobTicket
    /// The job's outcome, once it has one.
    func wait(_ ticket: JobTicket) async -> Result<GenerationOutput, any Error>
    /// Nothing more is wanted: a queued job is dropped, a running one stopped without a picture. Returns at
    /// once (a shared store does the rest in the background): it is called from cancellation handlers.
    func cancel(_ ticket: JobTicket)
    /// A1111's /interrupt: the running job (this front's, on a shared store) stops after its step and
    /// returns what it has.
    func interrupt() async
    /// The running job's progress and how many wait, for /sdapi/v1/progress.
    func state() async -> QueueState
    /// Where the job a client tagged with `taskID` is, for /internal/progress.
    func status(ofTask taskID: String) async -> TaskStatus
    /// Stops taking work (and, in process, stops what runs).
    func shutdown() async
}

/// A submitted job. `local` is the live job when it runs in this process (the in-memory store).
struct JobTicket: Sendable {
    let id: String
    let local: Job?
}

/// What the HTTP side sees of a running job.
struct JobProgress: Sendable {
    var pipeline: String
    /// Pictures in the job, the one being drawn (from 0) and its step.
    var count: Int
    var image = 0, step = 0, steps = 0
    var started: Date?
    /// The live preview and a number that changes with it; only for a job running in this process.
    var preview: (@Sendable () -> (png: [UInt8], id: Int)?)?
}

struct QueueState: Sendable {
    var running: JobProgress?
    var queued: Int
    var interrupted: Bool
    /// Mean seconds per job, for Retry-After.
    var meanSeconds: Double
}

/// Where the job a client tagged with a task id is, as AUTOMATIC1111's /internal/progress reports it.
enum TaskStatus: Sendable {
    case queued(position: Int)
    case running(JobProgress)
    case finished
    case unknown
}

/// The worker's side of a store: the next job to run and where its outcome goes. Called on the worker's
/// own thread (the pipelines are synchronous).
protocol JobSource: AnyObject, Sendable {
    /// Blocks until there is a job (claimed: nobody else runs it); nil when the worker should stop.
    func next() -> Job?
    /// Records the outcome (and resumes whoever waits for it).
    func finished(_ job: Job, _ result: Result<GenerationOutput, any Error>, seconds: Double)
}
