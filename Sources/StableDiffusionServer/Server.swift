import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import StableDiffusion

/// `sd serve`: AUTOMATIC1111- and OpenAI-compatible HTTP APIs over one loaded model, or (with `--queue`) a
/// front of a queue that workers on other machines share.
public final class StableDiffusionServer: Sendable {
    public let configuration: ServerConfiguration
    /// Where requests become jobs: this process's queue, or the shared one.
    let store: any JobStore
    /// The models requests may name; `model` is the one they get by default.
    let catalog: ModelCatalog
    let metrics: ServerMetrics
    let files: any FileStoring
    let logger: Logger
    private let running = RunningGroup()
    /// The model this process loaded, if any (a front of a shared queue may hold none): what needs weights
    /// outside a job (ControlNet's /controlnet/detect depth module) uses it.
    let localModel: ServedModel?
    /// What runs jobs in this process (kept alive with the server), and how it stops.
    private let worker: (any Sendable)?
    private let stopWorker: @Sendable () async -> Void

    /// The model the request being handled names, when a shared queue has several: its validation and
    /// defaults are then that model's (see `respond`).
    @TaskLocal static var requestedModel: ModelDescriptor?

    /// The model a request is validated against: the one it names, else the default (what the info
    /// endpoints describe).
    var model: ModelDescriptor { Self.requestedModel ?? catalog.current }

    /// One model, one process: an in-memory queue and a generation thread (plain `sd serve`).
    public convenience init(model: ServedModel, configuration: ServerConfiguration, logger: Logger) {
        let metrics = ServerMetrics()
        let store = MemoryJobStore(capacity: configuration.queueSize, metrics: metrics)
        let worker = GenerationWorker(models: [model], source: store, metrics: metrics, logger: logger,
                                      previewVAE: configuration.previewVAE, previewEvery: configuration.previewEvery)
        self.init(store: store, catalog: ModelCatalog(fixed: [model.descriptor]), localModel: model, metrics: metrics,
                  files: FileStore(lifetime: configuration.fileLifetimeSeconds), worker: worker, stopWorker: {},
                  configuration: configuration, logger: logger)
    }

    /// `stopWorker` runs at shutdown, after the store stopped taking work.
    init(store: any JobStore, catalog: ModelCatalog, localModel: ServedModel?, metrics: ServerMetrics, files: any FileStoring,
         worker: (any Sendable)?,
         stopWorker: @escaping @Sendable () async -> Void, configuration: ServerConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
        self.catalog = catalog
        self.localModel = localModel
        self.store = store
        self.worker = worker
        self.stopWorker = stopWorker
        self.files = files
    }

    /// Serves until SIGTERM/SIGINT (or `stop` in tests): then it stops taking work, cancels the running
    /// job, answers what was in flight and returns. `onStarted` gets the bound port (useful with port 0).
    public func run(handleSignals: Bool = true, onStarted: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let group = ServiceGroup(configuration: .init(
            services: serviceList(onStarted: onStarted),
            gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [],
            logger: logger))
        running.set(group)
        defer { running.set(nil) }
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await group.run()
            } onGracefulShutdown: {}
        } onCancel: {
            Task { await group.triggerGracefulShutdown() }
        }
    }

    /// What SIGTERM does, for embedders and tests: stop taking work, cancel the running job, close.
    public func shutdown() async {
        await running.get()?.triggerGracefulShutdown()
    }

    /// The application first and the job canceller last: ServiceGroup shuts services down in reverse order,
    /// so the running job is cancelled before the HTTP server waits for its open requests.
    private func serviceList(onStarted: @escaping @Sendable (Int) async -> Void) -> [any Service] {
        let app = Application(
            router: makeRouter(),
            server: .guardedHTTP1(limits: configuration.connections, metrics: metrics, logger: logger),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "sd-serve"),
            onServerRunning: { channel in await onStarted(channel.localAddress?.port ?? 0) },
            logger: logger)
        return [app, JobCanceller(store: store, stopWorker: stopWorker)]
    }

    func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: RequestLogMiddleware(metrics: metrics))
        router.add(middleware: BodyLimitMiddleware(limit: configuration.maxBodyBytes))
        if let origin = configuration.corsAllowOrigin {
            router.add(middleware: CORSMiddleware(allowOrigin: .custom(origin), allowHeaders: [.accept, .authorization, .contentType, .origin],
                                                  allowMethods: [.get, .post, .options]))
        }
        if let auth = configuration.apiAuth { router.add(middleware: BasicAuthMiddleware(credentials: auth)) }
        addA1111Generation(to: router)
        addA1111Info(to: router)
        addA1111Extras(to: router)
        addA1111ControlNet(to: router)
        addOpenAI(to: router)
        addWebPage(to: router)
        router.get("/metrics") { _, _ -> Response in self.metrics.response }
        return router
    }

    /// Collects the body (up to the limit), runs `work` with it, and cancels `work` if the client
    /// disconnects meanwhile (a queued job is dropped, a running one stopped). Errors become responses
    /// in the route's dialect.
    ///
    /// The response says `Connection: close`. Hummingbird ends the connection after a body read with
    /// cancellation on inbound close (its watcher may already have taken the next request's first bytes).
    /// Without the header a keep-alive client sent its next request on that connection and, now and then,
    /// lost it: about 1 in 20 of webuiapi's calls after an interrupted job failed with RemoteDisconnected.
    func handle(_ request: Request, style: APIError.Style, _ work: @escaping @Sendable ([UInt8]) async throws -> Response) async -> Response {
        var response = await respond(request, style: style, work)
        response.headers[.connection] = "close"
        return response
    }

    private func respond(_ request: Request, style: APIError.Style, _ work: @escaping @Sendable ([UInt8]) async throws -> Response) async -> Response {
        let bodyRead = BodyReadState()
        do {
            return try await request.body.consumeWithCancellationOnInboundClose { body in
                let bytes = try await self.readBody(body, declaredLength: request.headers[.contentLength].flatMap(Int.init), state: bodyRead)
                if let named = self.namedModel(bytes) {
                    return try await Self.$requestedModel.withValue(named) { try await work(bytes) }
                }
                return try await work(bytes)
            }
        } catch let error as APIError {
            return error.response(style)
        } catch is CancellationError {
            // The inbound watch cancels the work when the connection ends, also when it ends inside the body:
            // then the client broke its request off (400, or 408 when it stalled), no job was asked for.
            switch bodyRead.get() {
            case .failed(let error): return error.response(style)
            case .reading: return APIError.incompleteBody.response(style)
            case .read: return APIError.cancelled.response(style)
            }
        } catch {
            logger.error("request failed", metadata: ["error": "\(error)"])
            return APIError.status(.internalServerError, "\(error)").response(style)
        }
    }

    /// On a shared queue with several models, the one a JSON body names (A1111's
    /// `override_settings.sd_model_checkpoint`, OpenAI's `model`); nil otherwise (one model: nothing to pick).
    private func namedModel(_ body: [UInt8]) -> ModelDescriptor? {
        guard catalog.isShared, catalog.all.count > 1,
              let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else { return nil }
        let title = ((object["override_settings"] as? [String: Any])?["sd_model_checkpoint"] as? String) ?? (object["model"] as? String)
        return title.flatMap { catalog.named($0) }
    }

    /// The whole body, up to the limit (413 beyond). A body the client broke off, by closing or resetting
    /// the connection, is its error (400), and one it stopped sending for `--body-timeout` a 408: neither is
    /// the server's failure. The outcome goes to `state` too, for when the inbound watch's cancellation wins.
    private func readBody(_ body: RequestBody, declaredLength: Int?, state: BodyReadState) async throws -> [UInt8] {
        let limit = configuration.maxBodyBytes
        let buffer: ByteBuffer
        do {
            buffer = try await body.collect(upTo: limit)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            let failure: APIError
            switch error {
            case is NIOTooManyBytesError: failure = .bodyTooLarge(limit: limit)
            case is RequestReadTimeout: failure = .status(.requestTimeout, "the request body stopped arriving for \(configuration.connections.bodyTimeout) s")
            default: failure = .incompleteBody
            }
            state.set(.failed(failure))
            throw failure
        }
        if let declaredLength, buffer.readableBytes < declaredLength {
            state.set(.failed(.incompleteBody))
            throw APIError.incompleteBody
        }
        state.set(.read)
        return Array(buffer.readableBytesView)
    }

    /// Queues a generation and waits for it. Pipeline argument errors are the client's (422). An interrupted
    /// job returns the pictures it finished and the one it was drawing, as A1111 does.
    func generate(_ request: GenerationRequest) async throws -> GenerationOutput {
        let ticket = try await store.submit(request)
        let store = self.store
        // A client that goes away cancels its job (dropped when queued, stopped when running).
        let result = await withTaskCancellationHandler {
            await store.wait(ticket)
        } onCancel: {
            store.cancel(ticket)
        }
        switch result {
        case .success(let output):
            return output
        case .failure(let error as APIError):
            throw error
        case .failure(PipelineError.invalidArgument(let message)):
            throw APIError.invalid("", message)
        case .failure(let error):
            if Task.isCancelled { throw CancellationError() }
            throw APIError.status(.internalServerError, "\(error)")
        }
    }
}

/// Cancels the running job and refuses new ones when the server is told to stop.
struct JobCanceller: Service {
    let store: any JobStore
    let stopWorker: @Sendable () async -> Void

    func run() async throws {
        try? await gracefulShutdown()
        await store.shutdown()
        await stopWorker()
    }
}

/// How far `readBody` got, for `respond` to tell a broken-off body from a client leaving while its job runs.
private final class BodyReadState: @unchecked Sendable {
    enum State { case reading, read, failed(APIError) }
    private let lock = NSLock()
    private var state = State.reading
    func set(_ s: State) { lock.withLock { state = s } }
    func get() -> State { lock.withLock { state } }
}

/// The service group of a running server, for `shutdown()`.
private final class RunningGroup: @unchecked Sendable {
    private let lock = NSLock()
    private var group: ServiceGroup?
    func set(_ g: ServiceGroup?) { lock.withLock { group = g } }
    func get() -> ServiceGroup? { lock.withLock { group } }
}

extension ServerMetrics {
    /// `GET /metrics`: the Prometheus text format (a server's and a worker's listener).
    var response: Response {
        Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(bytes: text)))
    }
}
