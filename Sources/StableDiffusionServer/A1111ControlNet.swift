import Foundation
import Hummingbird
import StableDiffusion

/// sd-webui-controlnet's API: `alwayson_scripts.controlnet` units on txt2img and img2img, and
/// `/controlnet/version`, `/model_list`, `/module_list`, `/detect` (field names and defaults from the extension's
/// `external_code.ControlNetUnit` and its api.py).
extension StableDiffusionServer {
    /// At most this many units per request (the extension's default unit count is 3).
    static let maxControlNetUnits = 4

    func addA1111ControlNet(to router: Router<BasicRequestContext>) {
        router.get("/controlnet/version") { _, _ -> Response in .json(.object([("version", 2)])) }
        router.get("/controlnet/model_list") { _, _ -> Response in
            .json(.object([("model_list", .array(self.model.controlNetNames.map { .string($0) }))]))
        }
        router.get("/controlnet/module_list") { _, _ -> Response in
            let modules = self.model.controlModules
            return .json(.object([("module_list", .array(modules.map { .string($0.rawValue) })),
                                  ("module_detail", .object(modules.map { ($0.rawValue, Self.moduleDetail($0)) }))]))
        }
        router.get("/controlnet/settings") { _, _ -> Response in
            .json(.object([("control_net_unit_count", .int(Int64(Self.maxControlNetUnits)))]))
        }
        router.post("/controlnet/detect") { request, _ -> Response in
            await self.handle(request, style: .a1111) { body in try await self.detect(body) }
        }
    }

    /// The sliders the web UI shows for a module (its `preprocessor_sliders_config`), for clients and the page.
    static func moduleDetail(_ module: ControlPreprocessor) -> JSON {
        func slider(_ name: String, _ value: Double, _ min: Double, _ max: Double) -> JSON {
            .object([("name", .string(name)), ("value", .double(value)), ("min", .double(min)), ("max", .double(max))])
        }
        let resolution = slider("Preprocessor Resolution", 512, 64, 2048)
        let sliders: [JSON]
        switch module {
        case .none: sliders = []
        case .canny: sliders = [resolution, slider("Canny Low Threshold", 100, 1, 255), slider("Canny High Threshold", 200, 1, 255)]
        case .depth: sliders = [resolution]
        }
        return .object([("model_free", false), ("sliders", .array(sliders))])
    }

    /// A module name as clients send it: the web UI's names and aliases (`depth_midas`), any case.
    func controlModule(_ name: String) -> ControlPreprocessor? {
        let n = name.lowercased()
        let module: ControlPreprocessor? = n.isEmpty || n == "none" ? ControlPreprocessor.none
            : n == "canny" ? .canny : (n == "depth" || n == "depth_midas") ? .depth : nil
        return module.flatMap { model.controlModules.contains($0) ? $0 : nil }
    }

    /// `POST /controlnet/detect`: the preprocessor alone on each picture (base64 PNGs back, as the extension).
    func detect(_ body: [UInt8]) async throws -> Response {
        var r = try FieldReader.parse(body)
        let name = r.string("controlnet_module", default: "none")
        let module = controlModule(name)
        if module == nil {
            r.fail("controlnet_module", "unknown module \"\(name)\"; this server has \(model.controlModules.map(\.rawValue).joined(separator: ", "))")
        }
        let images = r.stringArray("controlnet_input_images") ?? r.stringArray("controlnet_images") ?? []
        if images.isEmpty { r.fail("controlnet_input_images", "at least one image is required", type: "missing") }
        if images.count > configuration.limits.maxImages {
            r.fail("controlnet_input_images", "at most \(configuration.limits.maxImages) images per request")
        }
        let resolution = r.int("controlnet_processor_res", default: 512, in: -1...configuration.limits.maxSide)
        let a = r.double("controlnet_threshold_a", default: -1, in: -1...255)
        let b = r.double("controlnet_threshold_b", default: -1, in: -1...255)
        try r.finish()
        let pictures = try images.map { try ImageInput.decodeBase64($0, field: "controlnet_input_images", maxSide: configuration.limits.maxInputSide) }
        let unit = ControlNetRequest(model: "", module: module ?? .none, image: nil, weight: 1, guidanceStart: 0, guidanceEnd: 1,
                                     resizeMode: .default, processorResolution: resolution < 64 ? 512 : resolution, pixelPerfect: false,
                                     thresholdA: a, thresholdB: b, controlMode: 0)
        // The depth module needs the model's depth estimator: only where this process loaded the model (not on
        // a front of a shared queue that holds no weights).
        let estimator = localModel?.active.depth?.depthEstimator
        if unit.module == .depth, estimator == nil {
            throw APIError.invalid("controlnet_module", "the depth module runs on a server that loaded the model; this front of a shared queue holds none")
        }
        // Off the request's executor thread: the depth module runs a network.
        let out = try await Task.detached {
            try pictures.map { picture -> JSON in
                // The map comes back at the processor resolution (the generation size only matters with pixel perfect).
                let map = try unit.controlImage(input: picture, width: picture.width, height: picture.height,
                                                depthEstimator: estimator)
                return .string(Data(try map.pngData(textChunks: [])).base64EncodedString())
            }
        }.value
        return .json(.object([("images", .array(out)), ("info", "Success")]))
    }

    /// The request's `alwayson_scripts.controlnet.args` units (disabled ones skipped), every problem a field
    /// error under `alwayson_scripts`. `needsImages`: txt2img has no input picture to fall back on.
    func readControlNetUnits(_ r: inout FieldReader, needsImages: Bool) -> [ControlNetRequest] {
        guard let scripts = r.object["alwayson_scripts"], scripts != .null else { return [] }
        guard let table = scripts.objectValue else {
            r.fail("alwayson_scripts", "Input should be a valid dictionary", type: "dict_type")
            return []
        }
        guard let entry = table.first(where: { $0.key.lowercased() == "controlnet" })?.value, entry != .null else { return [] }
        guard let args = entry.objectValue?["args"]?.arrayValue ?? entry.arrayValue else {
            r.fail("alwayson_scripts", "controlnet: expected {\"args\": [unit, ...]}")
            return []
        }
        var units: [ControlNetRequest] = []
        for (i, arg) in args.enumerated() {
            guard let object = arg.objectValue else {
                r.fail("alwayson_scripts", "controlnet.args[\(i)]: a unit must be an object (sd-webui-controlnet's ControlNetUnit)")
                continue
            }
            var unit = FieldReader(object: object)
            if let parsed = readUnit(&unit, needsImage: needsImages) { units.append(parsed) }
            for e in unit.errors { r.fail("alwayson_scripts", "controlnet.args[\(i)].\(e.field): \(e.msg)", type: e.type) }
        }
        if units.count > Self.maxControlNetUnits {
            r.fail("alwayson_scripts", "at most \(Self.maxControlNetUnits) enabled ControlNet units, got \(units.count)")
        }
        return units
    }

    /// One enabled unit, or nil when disabled or wrong (the errors are in `u`).
    private func readUnit(_ u: inout FieldReader, needsImage: Bool) -> ControlNetRequest? {
        guard u.bool("enabled", default: true) else { return nil }
        let loaded = model.controlNetNames
        let modelName = u.string("model", default: "None")
        if modelName.isEmpty || modelName == "None" {
            u.fail("model", "choose a ControlNet model; this server has \(loaded.isEmpty ? "none (start sd serve with --controlnet MODEL)" : loaded.joined(separator: ", "))")
        } else if !loaded.contains(where: { Self.names(modelName, $0) }) {
            u.fail("model", "ControlNet model \"\(modelName)\" is not loaded; this server has \(loaded.isEmpty ? "none (start sd serve with --controlnet MODEL)" : loaded.joined(separator: ", "))")
        }
        let moduleName = u.string("module", default: "none")
        let module = controlModule(moduleName)
        if module == nil { u.fail("module", "unknown module \"\(moduleName)\"; this server has \(model.controlModules.map(\.rawValue).joined(separator: ", "))") }
        var image: Image?
        // The extension takes `image` (or the older `input_image`) as base64, or as {"image": ..., "mask": ...}.
        let imageKey = u.object["image"].map { _ in "image" } ?? "input_image"
        var imageText = u.object[imageKey]?.stringValue
        if let pair = u.object[imageKey]?.objectValue {
            imageText = pair["image"]?.stringValue
            if let m = pair["mask"]?.stringValue, !m.isEmpty { u.fail(imageKey, "unit masks are not supported", type: "unsupported") }
        }
        if let text = imageText, !text.isEmpty {
            do { image = try ImageInput.decodeBase64(text, field: imageKey, maxSide: configuration.limits.maxInputSide) } catch {
                u.fail(imageKey, (error as? APIError)?.message ?? "\(error)", type: "image")
            }
        } else if needsImage {
            u.fail("image", "txt2img needs a control image (img2img falls back on the input picture)", type: "missing")
        }
        u.unsupported("mask", when: { !($0.stringValue ?? "").isEmpty }, "unit masks are not supported")
        let weight = u.double("weight", default: 1, in: 0...2)
        let start = u.double("guidance_start", default: 0, in: 0...1)
        let end = u.double("guidance_end", default: 1, in: 0...1)
        if start >= end { u.fail("guidance_start", "guidance_start \(start) must be below guidance_end \(end)") }
        let resize = readChoice(&u, "resize_mode", ControlNetRequest.resizeModes.map(\.0), default: 1)
        var mode = readChoice(&u, "control_mode", ControlNetRequest.controlModes, default: 0)
        if u.object["guessmode"]?.boolValue == true { mode = 2 }  // the extension's older name for "ControlNet is more important"
        let resolution = u.int("processor_res", default: 512, in: -1...configuration.limits.maxSide)
        let a = u.double("threshold_a", default: -1, in: -1...255)
        let b = u.double("threshold_b", default: -1, in: -1...255)
        let pixelPerfect = u.bool("pixel_perfect", default: false)
        guard u.errors.isEmpty, let module else { return nil }
        return ControlNetRequest(model: modelName, module: module, image: image, weight: Float(weight), guidanceStart: start, guidanceEnd: end,
                                 resizeMode: ControlNetRequest.resizeModes[resize].1, processorResolution: resolution < 64 ? 512 : resolution,
                                 pixelPerfect: pixelPerfect, thresholdA: a, thresholdB: b, controlMode: mode)
    }

    /// A choice sent as its index or its name (the extension accepts both).
    private func readChoice(_ u: inout FieldReader, _ key: String, _ names: [String], default value: Int) -> Int {
        guard let v = u.object[key], v != .null else { return value }
        if let s = v.stringValue, let i = names.firstIndex(where: { $0.lowercased() == s.lowercased() }) { return i }
        if let i = v.intValue, names.indices.contains(i) { return i }
        u.fail(key, "expected one of \(names.map { "\"\($0)\"" }.joined(separator: ", ")) or 0-\(names.count - 1)")
        return value
    }
}
