import Foundation
import Hummingbird
import StableDiffusion

/// AUTOMATIC1111's /sdapi/v1/extra-single-image, served by the x4 upscaler model (always x4). Extension
/// fields: prompt, negative_prompt, steps, cfg_scale, seed, noise_level (diffusers' defaults otherwise).
extension StableDiffusionServer {
    func addA1111Extras(to router: Router<BasicRequestContext>) {
        router.post("/sdapi/v1/extra-single-image") { request, _ -> Response in
            await self.handle(request, style: .a1111) { body in
                var r = try FieldReader.parse(body)
                let upscaler = r.string("upscaler_1", default: "None")
                if self.model.kind != .upscaler {
                    r.fail("upscaler_1", "this server's model (\(self.model.name)) is not an x4 upscaler")
                } else if upscaler != "None", upscaler != self.upscalerName, upscaler != self.model.name {
                    r.fail("upscaler_1", "unknown upscaler \"\(upscaler)\"; known: None, \(self.upscalerName)")
                }
                let prompt = r.string("prompt", default: "")
                let negative = r.string("negative_prompt", default: "")
                let steps = r.int("steps", default: StableDiffusionUpscalePipeline.defaultSteps, in: 1...self.configuration.limits.maxSteps)
                let cfg = r.double("cfg_scale", default: Double(StableDiffusionUpscalePipeline.defaultGuidanceScale), in: 0...50)
                let noise = r.int("noise_level", default: StableDiffusionUpscalePipeline.defaultNoiseLevel, in: 0...1000)
                let seed = r.seed()
                let sampler = r.optionalString("sampler_name")
                let scheduler = sampler.map { _ in Samplers.resolve(sampler: sampler, scheduler: nil, reader: &r) } ?? nil
                guard let text = r.optionalString("image") else {
                    r.fail("image", "Field required", type: "missing")
                    try r.finish()
                    return .json(nil)
                }
                try r.finish()
                let image = try ImageInput.decodeBase64(text, field: "image", maxSide: self.configuration.limits.maxSide / 4)
                let request = GenerationRequest(task: .upscale(image, noiseLevel: noise), prompt: prompt,
                                                negativePrompt: negative.isEmpty ? nil : negative, steps: steps, guidanceScale: Float(cfg),
                                                width: nil, height: nil, scheduler: scheduler, eta: nil,
                                                seed: GenerationRequest.resolveSeed(seed), count: 1)
                let output = try await self.generate(request)
                guard let first = output.images.first else { throw APIError.cancelled }
                return .json(.object([("html_info", .string("<p>\(Self.escapeHTML(first.infotext))</p>")),
                                      ("image", .string(Data(first.png).base64EncodedString()))]))
            }
        }
    }

    static func escapeHTML(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
