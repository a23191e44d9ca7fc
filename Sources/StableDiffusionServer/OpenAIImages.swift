import Foundation
import Hummingbird
import StableDiffusion

/// OpenAI's Images API: /v1/images/generations (JSON) and /v1/images/edits (multipart, inpainting).
/// Extensions: seed, steps, negative_prompt, guidance_scale, sampler_name (and strength for edits).
extension StableDiffusionServer {
    func addOpenAI(to router: Router<BasicRequestContext>) {
        router.post("/v1/images/generations") { request, _ -> Response in
            let host = request.head.authority
            return await self.handle(request, style: .openAI) { body in
                let fields = try self.decodeGenerations(body)
                return try await self.respondOpenAI(fields.request(.txt2img), format: fields.format, host: host)
            }
        }
        router.post("/v1/images/edits") { request, _ -> Response in
            let host = request.head.authority
            let contentType = request.headers[.contentType]
            return await self.handle(request, style: .openAI) { body in
                let (fields, task) = try self.decodeEdits(body, contentType: contentType)
                return try await self.respondOpenAI(fields.request(task), format: fields.format, host: host)
            }
        }
        router.get("/v1/files/:id/content") { _, context -> Response in
            guard let id = context.parameters.get("id"), let png = await self.files.get(id) else {
                return APIError.status(.notFound, "no such file (files expire after \(Int(self.configuration.fileLifetimeSeconds)) s)")
                    .response(.openAI)
            }
            return Response(status: .ok, headers: [.contentType: "image/png"], body: .init(byteBuffer: ByteBuffer(bytes: png)))
        }
    }

    /// A /v1/images/generations body checked into the fields of a txt2img job.
    func decodeGenerations(_ body: [UInt8]) throws -> OpenAIFields {
        var r = try FieldReader.parse(body)
        var fields = OpenAIFields(reader: &r, server: self)
        if (r.optionalString("prompt") ?? "").isEmpty { r.fail("prompt", "a non-empty prompt is required", type: "missing") }
        if model.kind != .standard {
            r.fail("model", "model \(model.name) is a \(model.kind.rawValue) model; it cannot generate from text", type: "model_kind")
        }
        fields.size = fields.size ?? (model.defaultSide, model.defaultSide)
        try r.finish()
        return fields
    }

    /// A /v1/images/edits multipart body checked into the fields and task of an inpainting job.
    func decodeEdits(_ body: [UInt8], contentType: String?) throws -> (OpenAIFields, GenerationRequest.Task) {
        let form = try MultipartForm(body: body, contentType: contentType)
        var object: [String: JSONValue] = [:]
        for part in form.parts where part.filename == nil {
            guard let text = part.text else { throw APIError.invalid(part.name, "form field is not UTF-8 text") }
            object[part.name] = Self.formValue(text)
        }
        var r = FieldReader(object: object)
        var fields = OpenAIFields(reader: &r, server: self)
        let strength = r.double("strength", default: 1.0, in: 0...1)
        if (r.optionalString("prompt") ?? "").isEmpty { r.fail("prompt", "a non-empty prompt is required", type: "missing") }
        if model.kind != .standard, model.kind != .inpainting {
            r.fail("model", "model \(model.name) is a \(model.kind.rawValue) model; it cannot inpaint", type: "model_kind")
        }
        guard let imagePart = form.first("image", "image[]") else {
            r.fail("image", "an image file is required", type: "missing")
            try r.finish()
            throw APIError.invalid("image", "an image file is required", type: "missing")
        }
        try r.finish()
        let maxSide = configuration.limits.maxInputSide
        let image = try ImageInput.decode(imagePart.data, field: "image", maxSide: maxSide)
        let mask = try form.first("mask").map { try ImageInput.decode($0.data, field: "mask", maxSide: maxSide) }
        let repaint = try Self.repaintMask(image: image, mask: mask)
        let limit = configuration.limits.maxSide
        fields.size = fields.size ?? (min(limit, image.width / 8 * 8), min(limit, image.height / 8 * 8))
        if let s = fields.size, s.0 < 8 || s.1 < 8 { throw APIError.invalid("image", "image is smaller than 8x8") }
        return (fields, .inpaint(image.toRGB(), mask: repaint, strength: strength, paddingMaskCrop: nil))
    }

    /// A form field as JSON: numbers as numbers (multipart has only text), the rest as strings.
    static func formValue(_ text: String) -> JSONValue {
        if let i = Int(text) { return .int(i) }
        if let d = Double(text), d.isFinite { return .double(d) }
        return .string(text)
    }

    /// OpenAI's mask: fully transparent pixels (alpha 0) are edited; with no mask, the image's own
    /// transparent pixels are. A mask without alpha is read the diffusers way (white = repaint).
    static func repaintMask(image: Image, mask: Image?) throws -> Image {
        guard let source = mask ?? (image.channels == 4 || image.channels == 2 ? image : nil) else {
            throw APIError.invalid("mask", "send a mask, or an image with transparent areas to edit")
        }
        if mask != nil, source.width != image.width || source.height != image.height {
            throw APIError.invalid("mask", "mask is \(source.width)x\(source.height) but the image is \(image.width)x\(image.height)")
        }
        guard source.channels == 4 || source.channels == 2 else { return source.toGrayscale() }
        let alpha = source.channels - 1
        var pixels = [UInt8](repeating: 0, count: source.width * source.height)
        for i in pixels.indices where source.pixels[i * source.channels + alpha] == 0 { pixels[i] = 255 }
        guard pixels.contains(255) else { throw APIError.invalid("mask", "the mask has no fully transparent pixels to edit") }
        return try Image(width: source.width, height: source.height, channels: 1, pixels: pixels)
    }

    /// Answers as OpenAI: `{created, data: [{b64_json | url, revised_prompt}], size, output_format}`.
    func respondOpenAI(_ request: GenerationRequest, format: String, host: String?) async throws -> Response {
        let output = try await generate(request)
        guard !output.images.isEmpty else { throw APIError.cancelled }
        var data: [JSON] = []
        for image in output.images {
            let payload: (String, JSON)
            if format == "url" {
                let id = try await files.put(image.png)
                payload = ("url", .string("http://\(host ?? "\(configuration.host):\(configuration.port)")/v1/files/\(id)/content"))
            } else {
                payload = ("b64_json", .string(Data(image.png).base64EncodedString()))
            }
            data.append(.object([payload, ("revised_prompt", nil), ("seed", .uint(image.seed))]))
        }
        let first = output.images[0]
        return .json(.object([("created", .int(Int64(Date().timeIntervalSince1970))), ("data", .array(data)),
                              ("size", .string("\(first.width)x\(first.height)")), ("output_format", "png")]))
    }
}

/// The JSON/form fields both OpenAI endpoints share.
struct OpenAIFields {
    var prompt = "", negativePrompt: String?, n = 1, size: (Int, Int)?, format = "b64_json"
    var steps = 50, guidance: Float = 7.5, seed: UInt64?, scheduler: String?, model: String?

    init(reader r: inout FieldReader, server: StableDiffusionServer) {
        let limits = server.configuration.limits
        prompt = r.string("prompt", default: "")
        let negative = r.string("negative_prompt", default: "")
        negativePrompt = negative.isEmpty ? nil : negative
        n = r.int("n", default: 1, in: 1...limits.maxImages)
        if let s = r.optionalString("size"), s != "auto" {
            let parts = s.lowercased().split(separator: "x").compactMap { Int($0) }
            if parts.count != 2 {
                r.fail("size", "size must be \"WIDTHxHEIGHT\" (e.g. \"512x512\") or \"auto\"")
            } else if parts.contains(where: { $0 < 8 || $0 > limits.maxSide || $0 % 8 != 0 }) {
                r.fail("size", "width and height must be multiples of 8 between 8 and \(limits.maxSide), got \(s)")
            } else {
                size = (parts[0], parts[1])
            }
        }
        format = r.string("response_format", default: "b64_json")
        if format != "b64_json", format != "url" { r.fail("response_format", "must be \"b64_json\" or \"url\"") }
        if let f = r.optionalString("output_format"), f != "png" { r.fail("output_format", "only \"png\" is produced") }
        if r.optionalString("background") == "transparent" { r.fail("background", "transparent backgrounds are not supported") }
        // OpenAI's API has no steps or guidance: without the extensions, the model's own (diffusers') defaults,
        // so an LCM-distilled model runs its 4 steps and an SDXL model its guidance 5.
        let model = server.model
        steps = r.int("steps", default: min(model.defaultSteps, limits.maxSteps), in: 1...limits.maxSteps)
        guidance = Float(r.double("guidance_scale", default: Double(model.defaultGuidanceScale), in: 0...50))
        seed = r.seed()
        let sampler = r.optionalString("sampler_name")
        scheduler = sampler.map { _ in Samplers.resolve(sampler: sampler, scheduler: nil, reader: &r) } ?? nil
        // Any model name is accepted (clients send "dall-e-2"); one the server holds picks it.
        self.model = r.optionalString("model").flatMap { server.catalog.named($0)?.name }
    }

    func request(_ task: GenerationRequest.Task) -> GenerationRequest {
        GenerationRequest(task: task, prompt: prompt, negativePrompt: negativePrompt, steps: steps, guidanceScale: guidance,
                          width: size?.0, height: size?.1, scheduler: scheduler, eta: nil,
                          seed: GenerationRequest.resolveSeed(seed), count: n, model: model)
    }
}
