import Foundation
import DiffusionTensor
import StableDiffusion

// Requests and results as plain Codable values: what crosses a job store (a PostgreSQL row's JSON), never
// tensors or live objects. Pixels and floats travel as bytes (base64 in JSON), exactly, so a worker draws
// the picture the front's request described, bit for bit.

extension GenerationRequest: Codable {
    private enum Keys: String, CodingKey {
        case task, prompt, negativePrompt, steps, guidanceScale, width, height, scheduler, eta, seed, count, taskID, refinerSwitch, model
        case controlNets
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        self.init(task: try c.decode(Task.self, forKey: .task), prompt: try c.decode(String.self, forKey: .prompt),
                  negativePrompt: try c.decodeIfPresent(String.self, forKey: .negativePrompt), steps: try c.decode(Int.self, forKey: .steps),
                  guidanceScale: try c.decode(Float.self, forKey: .guidanceScale), width: try c.decodeIfPresent(Int.self, forKey: .width),
                  height: try c.decodeIfPresent(Int.self, forKey: .height), scheduler: try c.decodeIfPresent(String.self, forKey: .scheduler),
                  eta: try c.decodeIfPresent(Float.self, forKey: .eta), seed: try c.decode(UInt64.self, forKey: .seed),
                  count: try c.decode(Int.self, forKey: .count), taskID: try c.decodeIfPresent(String.self, forKey: .taskID),
                  refinerSwitch: try c.decodeIfPresent(Double.self, forKey: .refinerSwitch),
                  model: try c.decodeIfPresent(String.self, forKey: .model),
                  controlNets: try c.decodeIfPresent([ControlNetRequest].self, forKey: .controlNets) ?? [])
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(task, forKey: .task)
        try c.encode(prompt, forKey: .prompt)
        try c.encodeIfPresent(negativePrompt, forKey: .negativePrompt)
        try c.encode(steps, forKey: .steps)
        try c.encode(guidanceScale, forKey: .guidanceScale)
        try c.encodeIfPresent(width, forKey: .width)
        try c.encodeIfPresent(height, forKey: .height)
        try c.encodeIfPresent(scheduler, forKey: .scheduler)
        try c.encodeIfPresent(eta, forKey: .eta)
        try c.encode(seed, forKey: .seed)
        try c.encode(count, forKey: .count)
        try c.encodeIfPresent(taskID, forKey: .taskID)
        try c.encodeIfPresent(refinerSwitch, forKey: .refinerSwitch)
        try c.encodeIfPresent(model, forKey: .model)
        if !controlNets.isEmpty { try c.encode(controlNets, forKey: .controlNets) }
    }
}

extension GenerationRequest.Task: Codable {
    private enum Keys: String, CodingKey { case pipeline, image, mask, strength, paddingMaskCrop, depth, noiseLevel }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        let pipeline = try c.decode(String.self, forKey: .pipeline)
        func image(_ key: Keys) throws -> Image { try c.decode(CodableImage.self, forKey: key).image }
        switch pipeline {
        case "txt2img": self = .txt2img
        case "img2img": self = .img2img(try image(.image), strength: try c.decode(Double.self, forKey: .strength))
        case "inpaint":
            self = .inpaint(try image(.image), mask: try image(.mask), strength: try c.decode(Double.self, forKey: .strength),
                            paddingMaskCrop: try c.decodeIfPresent(Int.self, forKey: .paddingMaskCrop))
        case "depth2img":
            self = .depth2img(try image(.image), strength: try c.decode(Double.self, forKey: .strength),
                              depth: try c.decodeIfPresent(CodableTensor.self, forKey: .depth)?.tensor)
        case "upscale": self = .upscale(try image(.image), noiseLevel: try c.decode(Int.self, forKey: .noiseLevel))
        default: throw DecodingError.dataCorruptedError(forKey: .pipeline, in: c, debugDescription: "unknown pipeline \(pipeline)")
        }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(pipelineName, forKey: .pipeline)
        switch self {
        case .txt2img: break
        case .img2img(let image, let strength):
            try c.encode(CodableImage(image), forKey: .image)
            try c.encode(strength, forKey: .strength)
        case .inpaint(let image, let mask, let strength, let pad):
            try c.encode(CodableImage(image), forKey: .image)
            try c.encode(CodableImage(mask), forKey: .mask)
            try c.encode(strength, forKey: .strength)
            try c.encodeIfPresent(pad, forKey: .paddingMaskCrop)
        case .depth2img(let image, let strength, let depth):
            try c.encode(CodableImage(image), forKey: .image)
            try c.encode(strength, forKey: .strength)
            try c.encodeIfPresent(depth.map(CodableTensor.init), forKey: .depth)
        case .upscale(let image, let noise):
            try c.encode(CodableImage(image), forKey: .image)
            try c.encode(noise, forKey: .noiseLevel)
        }
    }
}

extension ControlNetRequest: Codable {
    private enum Keys: String, CodingKey {
        case model, module, image, weight, guidanceStart, guidanceEnd, resizeMode, processorResolution, pixelPerfect, thresholdA, thresholdB
        case controlMode
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        let resize = try c.decode(String.self, forKey: .resizeMode)
        guard let resizeMode = ImageResizeMode(rawValue: resize) else {
            throw DecodingError.dataCorruptedError(forKey: .resizeMode, in: c, debugDescription: "unknown resize mode \(resize)")
        }
        self.init(model: try c.decode(String.self, forKey: .model), module: try c.decode(ControlPreprocessor.self, forKey: .module),
                  image: try c.decodeIfPresent(CodableImage.self, forKey: .image)?.image, weight: try c.decode(Float.self, forKey: .weight),
                  guidanceStart: try c.decode(Double.self, forKey: .guidanceStart), guidanceEnd: try c.decode(Double.self, forKey: .guidanceEnd),
                  resizeMode: resizeMode, processorResolution: try c.decode(Int.self, forKey: .processorResolution),
                  pixelPerfect: try c.decode(Bool.self, forKey: .pixelPerfect), thresholdA: try c.decode(Double.self, forKey: .thresholdA),
                  thresholdB: try c.decode(Double.self, forKey: .thresholdB), controlMode: try c.decode(Int.self, forKey: .controlMode))
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(model, forKey: .model)
        try c.encode(module, forKey: .module)
        try c.encodeIfPresent(image.map(CodableImage.init), forKey: .image)
        try c.encode(weight, forKey: .weight)
        try c.encode(guidanceStart, forKey: .guidanceStart)
        try c.encode(guidanceEnd, forKey: .guidanceEnd)
        try c.encode(resizeMode.rawValue, forKey: .resizeMode)
        try c.encode(processorResolution, forKey: .processorResolution)
        try c.encode(pixelPerfect, forKey: .pixelPerfect)
        try c.encode(thresholdA, forKey: .thresholdA)
        try c.encode(thresholdB, forKey: .thresholdB)
        try c.encode(controlMode, forKey: .controlMode)
    }
}

/// An image's size and raw pixels.
private struct CodableImage: Codable {
    var width: Int, height: Int, channels: Int, pixels: Data
    init(_ i: Image) {
        width = i.width
        height = i.height
        channels = i.channels
        pixels = Data(i.pixels)
    }
    var image: Image { get throws { try Image(width: width, height: height, channels: channels, pixels: [UInt8](pixels)) } }
}

/// A float tensor's shape and its values as little-endian bytes.
private struct CodableTensor: Codable {
    var shape: [Int], values: Data
    init(_ t: Tensor) {
        shape = t.shape
        values = t.scalars.withUnsafeBufferPointer { Data(buffer: $0) }
    }
    var tensor: Tensor {
        get throws {
            let floats = values.withUnsafeBytes { raw in (0..<raw.count / 4).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
            return try Tensor(shape: shape, scalars: floats)
        }
    }
}
