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

    @Option(help: "The model: a diffusers folder, a Hub repo id (owner/name[@revision]) or a single-file checkpoint. With --queue it may be left out: a front that only queues jobs for workers.")
    var model: String?

    @OptionGroup var queue: QueueArguments

    @Option(help: "Weights variant to load, e.g. fp16.")
    var variant: String?

    @Option(name: .customLong("config"), help: "With a single-file --model: a diffusers folder whose configs to use instead of the bundled ones.")
    var modelConfig: String?

    @Option(help: "With a single-file --model: epsilon or v_prediction, overriding the detected one.")
    var predictionType: String?

    @Option(name: .customLong("lora"), help: "LoRA file merged for every request, FILE[:SCALE]; repeatable.")
    var loras: [String] = []

    @Option(help: "Folder where <lora:NAME:SCALE> tags in request prompts find NAME.safetensors (requests name nothing else).")
    var loraDir: String?

    @Option(name: .customLong("embedding"), help: "Textual-inversion embedding, FILE[:TOKEN]; repeatable.")
    var embeddings: [String] = []

    @Option(help: "How request prompts are read: plain (diffusers' exact picture, 77 tokens; the CLI's default) or a1111 ((word:1.2), [word], BREAK, long prompts).")
    var promptSyntax = "plain"

    @Option(help: "A VAE used instead of the model's (folder: AutoencoderKL or AutoencoderTiny such as TAESD; or an A1111 VAE file); A1111's sd_vae names it.")
    var vae: String?

    @Option(help: "A tiny autoencoder folder (AutoencoderTiny: TAESD, TAESDXL) whose decode of the running job is the live preview (A1111's TAESD preview).")
    var previewVae: String?

    @Option(help: "With --preview-vae: decode the live preview every N steps (and at the last).")
    var previewEvery: Int = 1

    @Option(help: "SDXL: a refiner (folder, single file or Hub repo id) loaded beside the model, for A1111's refiner_checkpoint / refiner_switch_at.")
    var refiner: String?

    @Option(name: .customLong("controlnet"), help: "A ControlNet offered to clients (folder, original-layout file or Hub repo id), listed by /controlnet/model_list under its folder, file or repo name; repeatable.")
    var controlNets: [String] = []

    @Option(help: "fp32 (diffusers' picture) or bf16 (convolutions and linear layers in bf16: faster, half the weight memory; needs AVX512_BF16 or AMX).")
    var precision: ComputePrecision = .fp32

    @Option(help: "Folder where the models' weights are kept converted and laid out for this CPU, per model and precision (created if needed; about the weights' size in that precision): later runs map them instead of converting every weight again.")
    var weightCache: String?

    @Option(help: "Address to bind (loopback unless told otherwise).")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0: any free port, printed at start).")
    var port = 7860

    @Option(help: "user:password for HTTP Basic authentication on every endpoint.")
    var apiAuth: String?

    @Option(help: "Jobs that may wait behind the running one (with --queue: in the shared queue); more get 503 with Retry-After.")
    var queueSize = 16

    @Option(help: "With --queue: the priority of this front's jobs, -100...100 (workers claim the highest first, the oldest within one); e.g. an interactive front above a batch one.")
    var priority = 0

    @Option(help: "Allow this origin with CORS (off unless given).")
    var corsAllowOrigin: String?

    @Option(help: "Largest request body in MiB (base64 images included).")
    var maxBodyMb = 64

    @Option(help: "Seconds a client has to send a request's header, from connecting (or from the first byte of a later request); then 408 and close.")
    var headerTimeout: Double = 30

    @Option(help: "Seconds a request body may stall between two reads; then 408 and close.")
    var bodyTimeout: Double = 60

    @Option(help: "Seconds a keep-alive connection may wait for its next request; then it is closed.")
    var idleTimeout: Double = 60

    @Option(help: "Connections open at once; more get 503 and are closed at once.")
    var maxConnections = 512

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535, got \(port)") }
        guard QueueSettings.priorities.contains(priority) else { throw ValidationError("--priority must be in \(QueueSettings.priorities), got \(priority)") }
        if priority != 0, try queue.url() == nil { throw ValidationError("--priority needs --queue (or SD_QUEUE_URL): it orders the shared queue") }
        guard queueSize >= 0 else { throw ValidationError("--queue-size must be >= 0, got \(queueSize)") }
        guard maxBodyMb >= 1 else { throw ValidationError("--max-body-mb must be >= 1, got \(maxBodyMb)") }
        for (flag, seconds) in [("--header-timeout", headerTimeout), ("--body-timeout", bodyTimeout), ("--idle-timeout", idleTimeout)] {
            guard seconds > 0, seconds.isFinite else { throw ValidationError("\(flag) must be a number of seconds > 0, got \(seconds)") }
        }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be >= 1, got \(maxConnections)") }
        if let auth = apiAuth, auth.firstIndex(of: ":") == nil || auth.hasPrefix(":") {
            throw ValidationError("--api-auth must be user:password")
        }
        for net in controlNets where !FileManager.default.fileExists(atPath: net) && (try? HubRepoID.parseUnlessLocal(net)) == nil {
            throw ValidationError("--controlnet: \(net) does not exist and is not a Hub repo id (a ControlNet folder, an original-layout file, or owner/name)")
        }
        guard PromptSyntax(rawValue: promptSyntax) != nil else {
            throw ValidationError("--prompt-syntax must be one of \(PromptSyntax.allCases.map(\.rawValue).joined(separator: ", ")), got \(promptSyntax)")
        }
        try FlagChecks.predictionType(predictionType)
        try FlagChecks.folder("--lora-dir", loraDir)
        try FlagChecks.folder("--config", modelConfig)
        try FlagChecks.precision(precision)
        try FlagChecks.weightCache(weightCache)
    }

    func run() throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let logger = Logger(label: "sd-serve")
        let queueURL = try queue.url()
        guard model != nil || queueURL != nil else { throw ValidationError("--model is required (or --queue, for a front of a shared queue)") }
        var settings = ServerConfiguration()
        settings.host = host
        settings.port = port
        settings.apiAuth = apiAuth
        settings.queueSize = queueSize
        settings.corsAllowOrigin = corsAllowOrigin
        settings.maxBodyBytes = maxBodyMb << 20
        settings.connections.headerTimeout = headerTimeout
        settings.connections.bodyTimeout = bodyTimeout
        settings.connections.idleTimeout = idleTimeout
        settings.connections.maxConnections = maxConnections
        if let previewVae {
            guard previewEvery >= 1 else { throw ValidationError("--preview-every must be >= 1, got \(previewEvery)") }
            settings.previewVAE = try Autoencoders.load(directory: URL(fileURLWithPath: previewVae, isDirectory: true), includeEncoder: false,
                                                      precision: precision)
            settings.previewEvery = previewEvery
        }
        let served = try model.map(load)
        let config = settings
        if let served {
            logger.info("model loaded", metadata: ["model": "\(served.name)", "kind": "\(served.kind.rawValue)",
                                                   "seconds": "\(String(format: "%.2f", served.components.loadSeconds))"])
        }
        let host = self.host
        let announce: @Sendable (Int) async -> Void = { port in
            logger.info("listening", metadata: ["host": "\(host)", "port": "\(port)"])
            // A plain line on stdout for scripts that wait for the server (and read the port when 0).
            FileHandle.standardOutput.write(Data("sd serve: listening on http://\(host):\(port)\n".utf8))
        }
        if let queueURL {
            var settings = try queue.settings()
            settings.priority = priority
            let queueSettings = settings
            try runBlocking {
                let queue = try await PostgresQueue.connect(queueURL, settings: queueSettings, logger: logger)
                var worker: QueueWorker?
                if let served {
                    worker = try await QueueWorker.start(queue: queue, models: [served], previewVAE: config.previewVAE,
                                                         previewEvery: config.previewEvery, logger: logger)
                }
                let server = StableDiffusionServer(queue: queue, worker: worker, localModel: served, configuration: config, logger: logger)
                defer { queue.close() }
                try await server.run(onStarted: announce)
            }
            return
        }
        guard let served else { return }
        let server = StableDiffusionServer(model: served, configuration: config, logger: logger)
        try runBlocking { try await server.run(onStarted: announce) }
    }

    private func load(_ model: String) throws -> ServedModel {
        let adapters = ModelAdapters(loras: try loras.map(LoRA.init(argument:)), embeddings: embeddings.map(TextualInversion.init(argument:)))
        return try ServedModel.load(model: model, variant: variant, configDirectory: modelConfig.map { URL(fileURLWithPath: $0, isDirectory: true) },
                                    predictionType: predictionType, adapters: adapters,
                                    loraDirectory: loraDir.map { URL(fileURLWithPath: $0, isDirectory: true) },
                                    promptSyntax: PromptSyntax(rawValue: promptSyntax) ?? .plain,
                                    hubProgress: DownloadProgressBar.forStderr()?.update, precision: precision, refiner: refiner, vae: vae,
                                    controlNets: controlNets)
    }
}
