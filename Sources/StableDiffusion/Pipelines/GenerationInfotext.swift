/// The "parameters" text that Stable Diffusion tools (AUTOMATIC1111's PNG Info, Civitai, ...) read back
/// from a PNG: the prompt, an optional "Negative prompt: ..." line, then "Key: value" pairs. The CLI and
/// `sd serve` both write it, so the rule lives here once.
public struct GenerationInfotext: Sendable, Equatable {
    public var prompt: String
    public var negativePrompt: String?
    public var steps: Int
    /// The scheduler class that ran (e.g. `PNDMScheduler`).
    public var sampler: String
    public var guidanceScale: Float
    public var seed: UInt64
    public var width: Int
    public var height: Int
    /// The model folder's name (never a full path: the text travels with the picture).
    public var model: String
    /// txt2img, img2img, inpaint, depth2img or upscale.
    public var pipeline: String
    /// Pipeline-specific pairs, e.g. `("Denoising strength", "0.8")`.
    public var extra: [(String, String)]

    public init(prompt: String, negativePrompt: String?, steps: Int, sampler: String, guidanceScale: Float, seed: UInt64,
                width: Int, height: Int, model: String, pipeline: String, extra: [(String, String)] = []) {
        self.prompt = prompt
        self.negativePrompt = negativePrompt
        self.steps = steps
        self.sampler = sampler
        self.guidanceScale = guidanceScale
        self.seed = seed
        self.width = width
        self.height = height
        self.model = model
        self.pipeline = pipeline
        self.extra = extra
    }

    public static func == (a: Self, b: Self) -> Bool { a.text == b.text }

    public var text: String {
        var lines = [prompt]
        if let n = negativePrompt { lines.append("Negative prompt: \(n)") }
        var fields: [(String, String)] = [("Steps", String(steps)), ("Sampler", sampler), ("CFG scale", String(guidanceScale)),
                                          ("Seed", String(seed)), ("Size", "\(width)x\(height)"), ("Model", model),
                                          ("Pipeline", pipeline)]
        fields += extra
        lines.append(fields.map { "\($0.0): \($0.1)" }.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }

    /// The PNG of `image` carrying this text as its `parameters` chunk.
    public func png(_ image: Image) throws -> [UInt8] {
        try image.pngData(textChunks: [("parameters", text)])
    }
}
