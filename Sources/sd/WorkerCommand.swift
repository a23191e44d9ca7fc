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

    @Option(help: "Folder where the models' weights are kept converted and laid out for this CPU, per model and precision (created if needed; about the weights' size in that precision): later runs map them instead of converting every weight again.")
    var weightCache: String?

    @Option(help: "Serve this worker's GET /metrics on this port (0: any free port; default: no HTTP port).")
    var metricsPort: Int?

    @Option(help: "The address --metrics-port binds (default: loopback only).")
    var metricsHost = "127.0.0.1"

    func validate() throws {
        if let metricsPort, !(0...65535).contains(metricsPort) { throw ValidationError("--metrics-port must be 0...65535, got \(metricsPort)") }
        guard !model.isEmpty else { throw ValidationError("--model is required (at least one)") }
        try FlagChecks.precision(precision)
        try FlagChecks.weightCache(weightCache)
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
            var endpoint: WorkerMetricsServer?
            if let metricsPort {
                do {
                    endpoint = try await WorkerMetricsServer.start(queue: queue, host: metricsHost, port: metricsPort, logger: logger)
                } catch {
                    queue.close()
                    throw ValidationError("--metrics-port: cannot listen on \(metricsHost):\(metricsPort): \(error)")
                }
            }
            let worker = try await QueueWorker.start(queue: queue, models: served, logger: logger)
            // A plain line on stdout for scripts that wait for the worker (and read its metrics port).
            let port = endpoint.map { ", metrics on http://\(metricsHost):\($0.port)/metrics" } ?? ""
            FileHandle.standardOutput.write(Data("sd worker: \(settings.name) ready with \(names.joined(separator: ", "))\(port)\n".utf8))
            await stop.wait()
            logger.info("stopping: the running job goes back to the queue")
            await worker.stop()
            await endpoint?.stop()
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
