import Foundation
import Hummingbird
import StableDiffusion

/// AUTOMATIC1111's read-only endpoints and job control: progress, interrupt, samplers, models, options.
extension StableDiffusionServer {
    func addA1111Info(to router: Router<BasicRequestContext>) {
        router.get("/sdapi/v1/progress") { _, _ -> Response in .json(await self.progress()) }
        router.post("/sdapi/v1/interrupt") { _, _ -> Response in
            await self.store.interrupt()
            return .json(.object([]))
        }
        // A1111's "skip" moves on to the next picture of a batch; here it stops the job like interrupt.
        router.post("/sdapi/v1/skip") { _, _ -> Response in
            await self.store.interrupt()
            return .json(.object([]))
        }
        router.get("/sdapi/v1/samplers") { _, _ -> Response in .json(Self.samplerList()) }
        router.get("/sdapi/v1/schedulers") { _, _ -> Response in .json(Self.schedulerList()) }
        router.get("/sdapi/v1/sd-models") { _, _ -> Response in
            // The refiner is listed too: clients pick `refiner_checkpoint` from this list.
            let models = self.catalog.all
            let entries: [JSON] = (models.map(\.name) + models.compactMap(\.refinerName)).map { n in
                let name = JSON.string(n)
                return .object([("title", name), ("model_name", name), ("hash", .null), ("sha256", .null), ("filename", name), ("config", .null)])
            }
            return .json(.array(entries))
        }
        router.get("/sdapi/v1/options") { _, _ -> Response in .json(self.options()) }
        router.post("/sdapi/v1/options") { request, _ -> Response in
            await self.handle(request, style: .a1111) { body in
                var reader = try FieldReader.parse(body)
                if let name = reader.optionalString("sd_model_checkpoint"), !self.catalog.select(name) {
                    reader.fail("sd_model_checkpoint", self.catalog.isShared
                                ? "model \"\(name)\" is not held by a live worker; available: \(self.catalog.names)"
                                : "this server serves one model (\(self.model.name)); switching is not supported")
                }
                if let vae = reader.optionalString("sd_vae"), ![self.model.vaeName ?? "Automatic", "Automatic"].contains(vae) {
                    reader.fail("sd_vae", "this server decodes with \(self.model.vaeName ?? "the model's own VAE") (sd serve --vae); switching is not supported")
                }
                try reader.finish()
                return .json(nil)
            }
        }
        // The VAEs a client may name in sd_vae: the one given with --vae (names only, never server paths).
        router.get("/sdapi/v1/sd-vae") { _, _ -> Response in
            .json(.array(self.model.vaeName.map { [.object([("model_name", .string($0)), ("filename", .string($0))])] } ?? []))
        }
        router.get("/sdapi/v1/cmd-flags") { _, _ -> Response in .json(.object([("api", true), ("nowebui", true)])) }
        router.get("/sdapi/v1/upscalers") { _, _ -> Response in .json(self.upscalerList()) }
        router.get("/sdapi/v1/scripts") { _, _ -> Response in .json(.object([("txt2img", .array([])), ("img2img", .array([]))])) }
        router.get("/sdapi/v1/memory") { _, _ -> Response in
            let ram: JSON = .object([("peak_rss", .int(Int64(ProcessMemory.peakResidentBytes)))])
            return .json(.object([("ram", ram), ("cuda", .object([]))]))
        }
    }

    static func samplerList() -> JSON {
        .array(Samplers.all.map { s -> JSON in
            let options: [(String, JSON)] = s.options.map { ($0.0, JSON.string($0.1)) }
            return .object([("name", .string(s.name)), ("aliases", .array(s.aliases.map(JSON.string))), ("options", .object(options))])
        })
    }

    static func schedulerList() -> JSON {
        .array(Samplers.schedulerNames.map { n -> JSON in
            let label = n.prefix(1).uppercased() + n.dropFirst()
            let rho: JSON = n == "karras" ? .double(7) : .double(-1)
            return .object([("name", .string(n)), ("label", .string(label)), ("aliases", .null), ("default_rho", rho), ("need_inner_model", false)])
        })
    }

    func upscalerList() -> JSON {
        var list: [JSON] = [.object([("name", "None"), ("model_name", .null), ("model_path", .null), ("model_url", .null), ("scale", .double(4))])]
        if model.kind == .upscaler {
            list.append(.object([("name", .string(upscalerName)), ("model_name", .string(model.name)), ("model_path", .null),
                                 ("model_url", .null), ("scale", .double(4))]))
        }
        return .array(list)
    }

    var upscalerName: String { "SD x4 (\(model.name))" }

    /// A1111's progress: job_count pictures in the running job, job_no the one being drawn.
    func progress() async -> JSON {
        let s = await store.state()
        var progress = 0.0, eta = 0.0
        var job = "", jobCount = 0, jobNo = 0, step = 0, steps = 0
        if let running = s.running {
            jobCount = running.count
            jobNo = running.image
            step = running.step
            steps = running.steps
            job = running.pipeline
            progress = 0.01 + Double(jobNo) / Double(jobCount)
            if steps > 0 { progress += Double(step) / Double(steps) / Double(jobCount) }
            let elapsed = running.started.map { Date().timeIntervalSince($0) } ?? 0
            eta = elapsed / progress - elapsed
            progress = min(progress, 1)
        }
        let state: JSON = .object([("skipped", false), ("interrupted", .bool(s.interrupted)), ("stopping_generation", false),
                                   ("job", .string(job)), ("job_count", .int(Int64(jobCount))), ("job_timestamp", "0"),
                                   ("job_no", .int(Int64(jobNo))), ("sampling_step", .int(Int64(step))),
                                   ("sampling_steps", .int(Int64(steps))), ("queued", .int(Int64(s.queued)))])
        // current_image: the cheap latent preview of the running job (A1111 sends its live preview here).
        let current: JSON = s.running?.preview?().map { .string(Data($0.png).base64EncodedString()) } ?? nil
        return .object([("progress", .double(progress)), ("eta_relative", .double(max(0, eta))), ("state", state),
                        ("current_image", current), ("textinfo", nil)])
    }

    func options() -> JSON {
        .object([("sd_model_checkpoint", .string(model.name)), ("sd_checkpoint_hash", nil), ("samples_format", "png"),
                 ("CLIP_stop_at_last_layers", 1), ("eta_ddim", .double(0)), ("eta_ancestral", .double(1)),
                 ("sd_vae", .string(model.vaeName ?? "Automatic")), ("enable_pnginfo", true)])
    }
}
