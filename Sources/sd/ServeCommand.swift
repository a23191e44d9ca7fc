import ArgumentParser
import Foundation
import Logging
import StableDiffusion
import StableDiffusionServer

/// `sd serve`: the model loaded once, served over AUTOMATIC1111's and OpenAI's HTTP APIs (docs/SERVER.md).
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a model over HTTP (AUTOMATIC1111 /sdapi/v1 and OpenAI /v1/images APIs).")

    @Option(help: "Diffusers model folder (with model_index.json).")
    var model: String

    @Option(help: "Weights variant to load, e.g. fp16.")
    var variant: String?

    @Option(help: "Address to bind (loopback unless told otherwise).")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0: any free port, printed at start).")
    var port = 7860

    @Option(help: "user:password for HTTP Basic authentication on every endpoint.")
    var apiAuth: String?

    @Option(help: "Jobs that may wait behind the running one; more get 503 with Retry-After.")
    var queueSize = 16

    @Option(help: "Allow this origin with CORS (off unless given).")
    var corsAllowOrigin: String?

    @Option(help: "Largest request body in MiB (base64 images included).")
    var maxBodyMb = 64

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535, got \(port)") }
        guard queueSize >= 0 else { throw ValidationError("--queue-size must be >= 0, got \(queueSize)") }
        guard maxBodyMb >= 1 else { throw ValidationError("--max-body-mb must be >= 1, got \(maxBodyMb)") }
        if let auth = apiAuth, auth.firstIndex(of: ":") == nil || auth.hasPrefix(":") {
            throw ValidationError("--api-auth must be user:password")
        }
    }

    func run() throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let logger = Logger(label: "sd-serve")
        var config = ServerConfiguration()
        config.host = host
        config.port = port
        config.apiAuth = apiAuth
        config.queueSize = queueSize
        config.corsAllowOrigin = corsAllowOrigin
        config.maxBodyBytes = maxBodyMb << 20
        let served = try ServedModel.load(path: model, variant: variant)
        logger.info("model loaded", metadata: ["model": "\(served.name)", "kind": "\(served.kind.rawValue)",
                                               "seconds": "\(String(format: "%.2f", served.components.loadSeconds))"])
        let server = StableDiffusionServer(model: served, configuration: config, logger: logger)
        // The server is async; this command's run() is not (main.swift runs every subcommand the same way),
        // so the main thread waits for it.
        let done = DispatchSemaphore(value: 0)
        let failure = ErrorBox()
        Task {
            do {
                try await server.run { port in
                    logger.info("listening", metadata: ["host": "\(host)", "port": "\(port)"])
                    // A plain line on stdout for scripts that wait for the server (and read the port when 0).
                    FileHandle.standardOutput.write(Data("sd serve: listening on http://\(host):\(port)\n".utf8))
                }
            } catch {
                failure.set(error)
            }
            done.signal()
        }
        done.wait()
        if let error = failure.get() { throw error }
    }
}

/// The server task's error, handed to the waiting main thread.
private final class ErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private var error: (any Error)?
    func set(_ e: any Error) { lock.withLock { error = e } }
    func get() -> (any Error)? { lock.withLock { error } }
}
