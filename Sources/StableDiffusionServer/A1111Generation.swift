import Foundation
import Hummingbird
import StableDiffusion

/// AUTOMATIC1111's /sdapi/v1/txt2img and /sdapi/v1/img2img (field names and defaults from its
/// `StableDiffusionProcessing*` classes and modules/api/models.py).
extension StableDiffusionServer {
    func addA1111Generation(to router: Router<BasicRequestContext>) {
        router.post("/sdapi/v1/txt2img") { request, _ -> Response in
            await self.handle(request, style: .a1111) { body in
                let (generation, reader, sendImages) = try self.decodeTxt2Img(body)
                return try await self.respondA1111(generation, reader: reader, denoising: 0, sendImages: sendImages)
            }
        }
        router.post("/sdapi/v1/img2img") { request, _ -> Response in
            await self.handle(request, style: .a1111) { body in
                let (generation, reader, strength, sendImages) = try self.decodeImg2Img(body)
                return try await self.respondA1111(generation, reader: reader, denoising: strength, sendImages: sendImages)
            }
        }
    }

    /// A txt2img body checked into a job (every field problem thrown at once, as a 422).
    func decodeTxt2Img(_ body: [UInt8]) throws -> (GenerationRequest, FieldReader, sendImages: Bool) {
        var reader = try FieldReader.parse(body)
        let parsed = readCommon(&reader)
        if model.kind != .standard {
            reader.fail("", "model \(model.name) is a \(model.kind.rawValue) model: use /sdapi/v1/img2img", type: "model_kind")
        }
        let controlNets = readControlNetUnits(&reader, needsImages: true)
        try reader.finish()
        var generation = parsed.request(.txt2img)
        generation.controlNets = controlNets
        return (generation, reader, parsed.sendImages)
    }

    /// An img2img body checked into a job, its pictures decoded; also returns the denoising strength.
    func decodeImg2Img(_ body: [UInt8]) throws -> (GenerationRequest, FieldReader, strength: Double, sendImages: Bool) {
        var reader = try FieldReader.parse(body)
        let parsed = readCommon(&reader)
        let task = try readImg2ImgTask(&reader)
        let controlNets = readControlNetUnits(&reader, needsImages: false)
        try reader.finish()
        guard let task else { throw APIError.invalid("init_images", "Field required", type: "missing") }
        var generation = parsed.request(task.task)
        generation.controlNets = controlNets
        switch task.task {
        case .txt2img, .img2img, .inpaint: break
        default:
            if !controlNets.isEmpty { throw APIError.invalid("alwayson_scripts", "ControlNet works with txt2img, img2img and inpainting, not \(task.task.pipelineName) (model \(model.name))") }
        }
        if case .upscale = task.task { (generation.width, generation.height) = (nil, nil) }
        return (generation, reader, task.strength, parsed.sendImages)
    }

    /// The fields txt2img and img2img share, checked against the server's limits.
    struct CommonFields {
        var prompt = "", negativePrompt: String?, steps = 50, cfg = 7.0, width = 512, height = 512
        var scheduler: String?, eta: Float?, seed: UInt64?, batchSize = 1, nIter = 1, sendImages = true, taskID: String?
        var refinerSwitch: Double?
        /// The model `override_settings.sd_model_checkpoint` picked; nil: the server's default.
        var model: String?

        func request(_ task: GenerationRequest.Task) -> GenerationRequest {
            GenerationRequest(task: task, prompt: prompt, negativePrompt: negativePrompt, steps: steps, guidanceScale: Float(cfg),
                              width: width, height: height, scheduler: scheduler, eta: eta,
                              seed: GenerationRequest.resolveSeed(seed), count: batchSize * nIter, taskID: taskID, refinerSwitch: refinerSwitch,
                              model: model)
        }
    }

    func readCommon(_ r: inout FieldReader) -> CommonFields {
        let limits = configuration.limits
        var f = CommonFields()
        f.prompt = r.string("prompt", default: "")
        let negative = r.string("negative_prompt", default: "")
        f.negativePrompt = negative.isEmpty ? nil : negative
        f.seed = r.seed()
        f.sendImages = r.bool("send_images", default: true)
        if let id = r.optionalString("force_task_id") {
            if id.isEmpty || id.utf8.count > 128 { r.fail("force_task_id", "must be 1 to 128 characters") } else { f.taskID = id }
        }
        f.steps = r.int("steps", default: 50, in: 1...limits.maxSteps)
        f.cfg = r.double("cfg_scale", default: 7.0, in: 0...50)
        // A1111's default is 512 whatever the model; SDXL models are trained at their own size (1024), so
        // for them the model's default size is used instead (capped by the server's limit).
        let side = model.isSDXL ? min(model.defaultSide, configuration.limits.maxSide) : 512
        f.width = readSide(&r, "width", default: side)
        f.height = readSide(&r, "height", default: side)
        f.batchSize = r.int("batch_size", default: 1, in: 1...limits.maxImages)
        f.nIter = r.int("n_iter", default: 1, in: 1...limits.maxImages)
        if f.batchSize * f.nIter > limits.maxImages {
            r.fail("batch_size", "batch_size x n_iter must be at most \(limits.maxImages), got \(f.batchSize * f.nIter)")
        }
        if r.object["eta"] != nil, r.object["eta"] != .null { f.eta = Float(r.double("eta", default: 0, in: 0...1)) }
        let sampler = r.optionalString("sampler_name") ?? r.optionalString("sampler_index")
        f.scheduler = Samplers.resolve(sampler: sampler, scheduler: r.optionalString("scheduler"), reader: &r)
        // Features this engine does not have are refused when asked for, not silently dropped.
        r.unsupported("enable_hr", when: { $0.boolValue == true }, "hires fix is not supported")
        r.unsupported("restore_faces", when: { $0.boolValue == true }, "face restoration is not supported")
        r.unsupported("tiling", when: { $0.boolValue == true }, "tiling is not supported")
        r.unsupported("subseed_strength", when: { ($0.doubleValue ?? 0) != 0 }, "variation seeds are not supported")
        r.unsupported("script_name", when: { !($0.stringValue ?? "").isEmpty }, "scripts are not supported")
        if let checkpoint = r.optionalString("refiner_checkpoint"), !checkpoint.isEmpty, checkpoint.lowercased() != "none" {
            if let refiner = model.refinerName, Self.names(checkpoint, refiner) {
                f.refinerSwitch = r.double("refiner_switch_at", default: 0.8, in: 0.01...0.99)
            } else {
                r.fail("refiner_checkpoint", "refiner \"\(checkpoint)\" is not loaded; \(model.refinerName.map { "this server's refiner is \($0)" } ?? "start sd serve with --refiner MODEL")")
            }
        }
        if let checkpoint = r.object["override_settings"]?.objectValue?["sd_model_checkpoint"]?.stringValue {
            if let picked = catalog.named(checkpoint) {
                f.model = picked.name
            } else {
                r.fail("override_settings", "model \"\(checkpoint)\" is not loaded; this server has \(catalog.names)")
            }
        }
        return f
    }

    func readSide(_ r: inout FieldReader, _ key: String, default value: Int) -> Int {
        let v = r.int(key, default: value, in: 8...configuration.limits.maxSide)
        if v % 8 != 0 { r.fail(key, "must be a multiple of 8, got \(v)") }
        return v
    }

    func matchesModel(_ name: String) -> Bool { catalog.named(name) != nil }

    /// Whether a client's checkpoint title names `model`: A1111 titles add an extension, a " [hash]", or both
    /// ("v1-5-pruned-emaonly.safetensors [6ce0161689]").
    static func names(_ title: String, _ model: String) -> Bool {
        var name = Substring(title)
        if name.hasSuffix("]"), let open = name.range(of: " [", options: .backwards) { name = name[..<open.lowerBound] }
        return [model, model + ".safetensors", model + ".ckpt"].contains(String(name))
    }

    /// img2img's inputs, routed by the model: inpainting when a mask is sent or the model is an inpainting
    /// model, depth2img on a depth model, x4 upscaling on the upscaler.
    func readImg2ImgTask(_ r: inout FieldReader) throws -> (task: GenerationRequest.Task, strength: Double)? {
        let limits = configuration.limits
        let strength = r.double("denoising_strength", default: 0.75, in: 0...1)
        let maskText = r.optionalString("mask")
        let invert = r.bool("inpainting_mask_invert", default: false)
        let fullRes = r.bool("inpaint_full_res", default: true)
        let padding = r.int("inpaint_full_res_padding", default: 0, in: 0...limits.maxSide)
        _ = r.int("mask_blur", default: 4, in: 0...64)  // accepted; the diffusers pipelines do not blur masks
        _ = r.int("resize_mode", default: 0, in: 0...0)
        let noiseLevel = r.int("noise_level", default: StableDiffusionUpscalePipeline.defaultNoiseLevel, in: 0...1000)
        let depthText = r.optionalString("depth_map")
        if depthText != nil, model.kind != .depth { r.fail("depth_map", "only a depth model takes a depth map") }
        guard let images = r.stringArray("init_images") else { return nil }
        guard let first = images.first else {
            r.fail("init_images", "at least one image is required", type: "too_short")
            return nil
        }
        let inputSide = model.kind == .upscaler ? limits.maxSide / 4 : limits.maxInputSide
        let image = try ImageInput.decodeBase64(first, field: "init_images", maxSide: inputSide)
        var mask = try maskText.map { try ImageInput.decodeBase64($0, field: "mask", maxSide: limits.maxInputSide) }
        if invert, let m = mask { mask = ImageInput.inverted(m) }
        switch model.kind {
        case .upscaler:
            return (.upscale(image, noiseLevel: noiseLevel), strength)
        case .depth:
            if mask != nil { r.fail("mask", "the depth model does not inpaint") }
            // Extension: a depth map as a grayscale PNG (8- or 16-bit); estimated by the model when absent.
            let depth = try depthText.map { try ImageInput.decodeDepthMap($0, field: "depth_map", maxSide: limits.maxInputSide) }
            return (.depth2img(image, strength: strength, depth: depth), strength)
        case .inpainting:
            let m = try mask ?? ImageInput.fullMask(like: image)
            return (.inpaint(image, mask: m, strength: strength, paddingMaskCrop: mask != nil && fullRes ? padding : nil), strength)
        case .standard:
            guard let m = mask else { return (.img2img(image, strength: strength), strength) }
            return (.inpaint(image, mask: m, strength: strength, paddingMaskCrop: fullRes ? padding : nil), strength)
        }
    }

    /// Runs the job and answers as A1111: base64 PNGs, the request echoed as `parameters`, and `info`
    /// (a JSON string) with seed, all_seeds and infotexts.
    func respondA1111(_ request: GenerationRequest, reader: FieldReader, denoising: Double, sendImages: Bool) async throws -> Response {
        let output = try await generate(request)
        let images: [JSON] = sendImages ? output.images.map { .string(Data($0.png).base64EncodedString()) } : []
        let count = request.count
        let seeds = (0..<count).map { JSON.uint(request.seed &+ UInt64($0)) }
        let first = output.images.first
        let samplerName = Samplers.a1111Name(engine: request.scheduler ?? "")
        let stamp = Self.timestamp()
        var isInpainting = false
        if case .inpaint = request.task { isInpainting = model.kind == .inpainting }
        let info: JSON = .object([
            ("prompt", .string(request.prompt)), ("all_prompts", .array(Array(repeating: .string(request.prompt), count: count))),
            ("negative_prompt", .string(request.negativePrompt ?? "")),
            ("all_negative_prompts", .array(Array(repeating: .string(request.negativePrompt ?? ""), count: count))),
            ("seed", .uint(request.seed)), ("all_seeds", .array(seeds)), ("subseed", .uint(request.seed)), ("all_subseeds", .array(seeds)),
            ("subseed_strength", 0), ("width", .int(Int64(first?.width ?? request.width ?? 0))),
            ("height", .int(Int64(first?.height ?? request.height ?? 0))), ("sampler_name", .string(samplerName)),
            ("scheduler_class", .string(output.schedulerClass)),
            ("cfg_scale", .number(request.guidanceScale)), ("steps", .int(Int64(request.steps))), ("batch_size", .int(Int64(count))),
            ("restore_faces", false), ("face_restoration_model", nil), ("sd_model_name", .string(model.name)), ("sd_model_hash", nil),
            ("sd_vae_name", model.vaeName.map { .string($0) } ?? nil), ("sd_vae_hash", nil), ("seed_resize_from_w", -1), ("seed_resize_from_h", -1),
            ("denoising_strength", .double(denoising)), ("extra_generation_params", .object([])), ("index_of_first_image", 0),
            ("infotexts", .array(output.images.map { .string($0.infotext) })), ("styles", .array([])), ("job_timestamp", .string(stamp)),
            ("clip_skip", 1), ("is_using_inpainting_conditioning", .bool(isInpainting)), ("version", "sd-serve"),
            ("interrupted", .bool(output.interrupted)),
        ])
        var parameters = reader.object.filter { $0.key != "init_images" && $0.key != "mask" && $0.key != "alwayson_scripts" }.mapValues { $0 }
        for (k, v) in [("prompt", JSONValue.string(request.prompt)), ("steps", .int(request.steps))] where parameters[k] == nil { parameters[k] = v }
        return .json(.object([("images", .array(images)), ("parameters", JSON(.object(parameters))), ("info", .string(info.text))]))
    }

    static func timestamp() -> String {
        let f = DateFormatter()
        f.dateFormat = "yyyyMMddHHmmss"
        f.timeZone = TimeZone(identifier: "UTC")
        return f.string(from: Date())
    }
}
