import ArgumentParser
import Foundation
import Logging
import StableDiffusion
import StableDiffusionServer

/// `sd worker`: loads its models and runs the shared queue's jobs for them until SIGTERM/SIGINT.
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "Run jobs from the shared PostgreSQL queue for the models given (docs/SCALING.md).")

    @OptionGroup var queue: QueueArguments

    @Option(help: "A model to hold (folder, Hub repo id or single file); repeatable. Jobs for these models are claimed.")
    var model: [String] = []

    @Option(name: .customLong("controlnet"), help: "A ControlNet loaded beside every --model, for sd-webui-controlnet units (as sd serve --controlnet); repeatable.")
    var controlNets: [String] = []

    @Option(help: "fp32 (diffusers' picture) or bf16 (needs AVX512_BF16 or AMX).")
    var precision: ComputePrecision = .fp32

    func validate() throws {
        guard !model.isEmpty else { throw ValidationError("--model is required (at least one)") }
        try FlagChecks.precision(precision)
    }

    func run() throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let logger = Logger(label: "sd-worker")
        guard let url = try queue.url() else { throw ValidationError("--queue (or SD_QUEUE_URL) is required") }
        let settings = try queue.settings()
        let served = try model.map {
            try ServedModel.load(model: $0, hubProgress: DownloadProgressBar.forStderr()?.update, precision: precision, controlNets: controlNets)
        }
        let names = served.map(\.name)
        guard Set(names).count == names.count else { throw ValidationError("--model: two models have the same name (\(names.joined(separator: ", ")))") }
        let stop = SignalWaiter()
        try runBlocking {
            let queue = try await PostgresQueue.connect(url, settings: settings, logger: logger)
            let worker = try await QueueWorker.start(queue: queue, models: served, logger: logger)
            // A plain line on stdout for scripts that wait for the worker.
            FileHandle.standardOutput.write(Data("sd worker: \(settings.name) ready with \(names.joined(separator: ", "))\n".utf8))
            await stop.wait()
            logger.info("stopping: the running job goes back to the queue")
            await worker.stop()
            queue.close()
        }
    }
}

/// Waits for SIGTERM or SIGINT.
final class SignalWaiter: @unchecked Sendable {
    private var sources: [any DispatchSourceSignal] = []
    private let stream: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation

    init() {
        (stream, continuation) = AsyncStream<Void>.makeStream()
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [continuation] in continuation.yield() }
            source.resume()
            sources.append(source)
        }
    }

    func wait() async {
        for await _ in stream { return }
    }
}
