import Foundation
import Hummingbird
import NIOCore
import StableDiffusion

/// The browser page at `/` (static files shipped as the target's `Web` resources) and the two endpoints
/// only it needs: what the loaded model can do, and AUTOMATIC1111's per-task `/internal/progress` with
/// the queue position and a live preview.
extension StableDiffusionServer {
    func addWebPage(to router: Router<BasicRequestContext>) {
        for (path, file) in [("/", "index.html"), ("/index.html", "index.html"), ("/app.js", "app.js"), ("/style.css", "style.css")] {
            router.get(RouterPath(stringLiteral: path)) { _, _ -> Response in self.staticFile(file) }
        }
        // `?model=NAME`: the capabilities of another model the server offers (the page's model menu on a shared queue).
        router.get("/sd/v1/capabilities") { request, _ -> Response in
            guard let name = request.uri.queryParameters["model"].map(String.init), !name.isEmpty else { return .json(self.capabilities()) }
            guard let named = self.catalog.named(name) else {
                return APIError.invalid("model", "model \"\(name)\" is not available; this server has \(self.catalog.names)").response(.a1111)
            }
            return Self.$requestedModel.withValue(named) { .json(self.capabilities()) }
        }
        router.post("/internal/progress") { request, _ -> Response in
            await self.handle(request, style: .a1111) { body in
                var r = try FieldReader.parse(body)
                let id = r.string("id_task", default: "")
                let lastPreview = r.int("id_live_preview", default: -1, in: -1...Int.max)
                let wantsPreview = r.bool("live_preview", default: true)
                try r.finish()
                return .json(await self.taskProgress(id, lastPreview: lastPreview, wantsPreview: wantsPreview))
            }
        }
    }

    /// The page's files, read once and kept; a missing resource bundle is a 500 naming what is missing.
    func staticFile(_ name: String) -> Response {
        guard let data = WebAssets.shared.file(name) else {
            return APIError.status(.internalServerError, "the web page's files (\(name)) are missing from this build").response(.a1111)
        }
        let type: String
        switch (name as NSString).pathExtension {
        case "html": type = "text/html; charset=utf-8"
        case "js": type = "text/javascript; charset=utf-8"
        case "css": type = "text/css; charset=utf-8"
        default: type = "application/octet-stream"
        }
        return Response(status: .ok, headers: [.contentType: type, .cacheControl: "no-cache"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// Which tabs the page shows and where each posts: txt2img on its own endpoint, every image-input
    /// pipeline through img2img (the model decides which it is).
    func capabilities() -> JSON {
        let pipelines: [String]
        switch model.kind {
        case .standard: pipelines = ["txt2img", "img2img", "inpaint"]
        case .inpainting: pipelines = ["inpaint"]
        case .depth: pipelines = ["depth2img"]
        case .upscaler: pipelines = ["upscale"]
        }
        let endpoints: [(String, JSON)] = pipelines.map { ($0, .string($0 == "txt2img" ? "/sdapi/v1/txt2img" : "/sdapi/v1/img2img")) }
        let side = Int64(model.defaultSide)
        // The model's own scheduler, so the page's default picture is the CLI's default picture.
        let own = model.schedulerClassName.flatMap { name in SchedulerKind.allCases.first { $0.className == name } }
        return .object([("model", .string(model.name)), ("models", .array(catalog.all.map { .string($0.name) })),
                        ("kind", .string(model.kind.rawValue)), ("family", .string(model.isSDXL ? "sdxl" : "sd")),
                        ("refiner", model.refinerName.map { .string($0) } ?? nil),
                        ("pipelines", .array(pipelines.map { .string($0) })), ("endpoints", .object(endpoints)),
                        ("width", .int(side)), ("height", .int(side)),
                        ("default_sampler", own.map { .string(Samplers.a1111Name(engine: $0.cliName)) } ?? nil)])
    }

    /// AUTOMATIC1111's ProgressResponse for one task: queued (with its place), running (progress, ETA and a
    /// latent preview when it changed since `lastPreview`), or completed.
    func taskProgress(_ id: String, lastPreview: Int, wantsPreview: Bool) async -> JSON {
        switch await store.status(ofTask: id) {
        case .queued(let position):
            return .object([("active", false), ("queued", true), ("completed", false), ("progress", nil), ("eta", nil),
                            ("live_preview", nil), ("id_live_preview", .int(Int64(lastPreview))),
                            ("textinfo", .string("In queue: \(position) ahead of you" + (position == 1 ? " (next)" : "")))])
        case .running(let job):
            let snap = job
            let count = max(1, job.count)
            var fraction = Double(snap.image) / Double(count)
            if snap.steps > 0 { fraction += Double(snap.step) / Double(snap.steps) / Double(count) }
            let elapsed = snap.started.map { Date().timeIntervalSince($0) } ?? 0
            let eta: JSON = fraction > 0 ? .double(max(0, elapsed / fraction - elapsed)) : nil
            var preview: JSON = nil, previewID = Int64(lastPreview)
            if wantsPreview, let p = job.preview?(), p.id != lastPreview {
                preview = .string("data:image/png;base64," + Data(p.png).base64EncodedString())
                previewID = Int64(p.id)
            }
            let text = "Step \(snap.step)/\(snap.steps)" + (count > 1 ? ", picture \(snap.image + 1)/\(count)" : "")
            return .object([("active", true), ("queued", false), ("completed", false), ("progress", .double(min(1, fraction))),
                            ("eta", eta), ("live_preview", preview), ("id_live_preview", .int(previewID)), ("textinfo", .string(text))])
        case .finished:
            return .object([("active", false), ("queued", false), ("completed", true), ("progress", .double(1)), ("eta", nil),
                            ("live_preview", nil), ("id_live_preview", .int(Int64(lastPreview))), ("textinfo", nil)])
        case .unknown:
            return .object([("active", false), ("queued", false), ("completed", false), ("progress", nil), ("eta", nil),
                            ("live_preview", nil), ("id_live_preview", .int(Int64(lastPreview))), ("textinfo", "Waiting...")])
        }
    }
}

/// The `Web` resource folder's files, loaded once.
final class WebAssets: @unchecked Sendable {
    static let shared = WebAssets()
    private let lock = NSLock()
    private var cache: [String: [UInt8]] = [:]

    func file(_ name: String) -> [UInt8]? {
        lock.withLock {
            if let data = cache[name] { return data }
            guard let folder = Self.folder(), let data = FileManager.default.contents(atPath: folder.appendingPathComponent(name).path) else {
                return nil
            }
            cache[name] = Array(data)
            return cache[name]
        }
    }

    static func folder() -> URL? {
        #if os(Linux)
        ResourceBundles.linuxFolder(bundle: "StableDiffusion_StableDiffusionServer.resources", resource: "Web")
        #else
        Bundle.module.url(forResource: "Web", withExtension: nil)
        #endif
    }
}
