import Foundation
import XCTest
import StableDiffusion

/// The bundled tiny models (Models/ at the repository root) and diffusers' outputs for them
/// (Scripts/reference/gen_pipeline_fixtures.py).
enum TinyModels {
    static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Models")
    }
    static var sd1: URL { root.appendingPathComponent("tiny-sd1") }
    static var sd2: URL { root.appendingPathComponent("tiny-sd2") }
}

struct PipelineCase {
    let directory: URL
    let json: [String: JSONValue]
    let tensors: SafeTensorsFile

    init(_ name: String) throws { try self.init(fixture: "pipelines/\(name)") }

    /// A case folder under Fixtures/ (case.json + tensors.safetensors).
    init(fixture path: String) throws {
        directory = try FixturePaths.url(path)
        let data = try Data(contentsOf: directory.appendingPathComponent("case.json"))
        json = try JSONValue.parse(data, file: path).objectValue ?? [:]
        tensors = try SafeTensorsFile(path: directory.appendingPathComponent("tensors.safetensors").path)
    }

    /// A case under Fixtures/lora/.
    init(lora name: String) throws { try self.init(fixture: "lora/\(name)") }

    var options: GenerationOptions {
        var o: GenerationOptions
        if let list = json["prompt"]?.arrayValue {
            o = GenerationOptions(prompts: list.compactMap(\.stringValue))
        } else {
            o = GenerationOptions(prompt: json["prompt"]?.stringValue ?? "")
        }
        if let n = json["negative_prompt"]?.stringValue { o.negativePrompts = [n] }
        o.height = json["height"]?.intValue
        o.width = json["width"]?.intValue
        o.numInferenceSteps = json["num_inference_steps"]?.intValue ?? 50
        o.guidanceScale = Float(json["guidance_scale"]?.doubleValue ?? 7.5)
        o.numImagesPerPrompt = json["num_images_per_prompt"]?.intValue ?? 1
        o.seed = json["seed"]?.intValue.map(UInt64.init)
        return o
    }

    /// diffusers' images as `[count, h, w, 3]` 0...255 floats.
    func expectedImages() throws -> [Tensor] {
        var out: [Tensor] = []
        while tensors.info("image\(out.count)") != nil { out.append(try tensors.tensor("image\(out.count)")) }
        return out
    }
}

/// PSNR (dB) and the largest channel difference of two 8-bit images given as 0...255 values.
func psnr(_ a: [Float], _ b: [Float]) -> (psnr: Double, maxDiff: Float) {
    var mse = 0.0, maxDiff: Float = 0
    for i in 0..<min(a.count, b.count) {
        let d = Double(a[i] - b[i])
        mse += d * d
        maxDiff = max(maxDiff, abs(a[i] - b[i]))
    }
    mse /= Double(max(a.count, 1))
    return (mse == 0 ? .infinity : 10 * log10(255 * 255 / mse), maxDiff)
}

func assertImagesMatch(_ result: GenerationResult, _ expected: [Tensor], file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(result.count, expected.count, "image count", file: file, line: line)
    for (i, e) in expected.enumerated() where i < result.count {
        XCTAssertEqual(Array(result.images.shape.dropFirst()), e.shape, "image \(i) shape", file: file, line: line)
        let (p, m) = psnr(result.rgb8(i).map(Float.init), e.scalars)
        if ProcessInfo.processInfo.environment["SD_PRINT_PSNR"] != nil {
            let mean = e.scalars.reduce(0, +) / Float(e.count)
            let std = (e.scalars.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(e.count)).squareRoot()
            print("image \(i): PSNR \(p) dB, max diff \(m), reference mean \(mean) std \(std)")
        }
        XCTAssertGreaterThanOrEqual(p, 40, "image \(i) PSNR", file: file, line: line)
        XCTAssertLessThanOrEqual(m, 16, "image \(i) max channel difference", file: file, line: line)
    }
}

extension TinyModels {
    static var inpainting: URL { root.appendingPathComponent("tiny-sd-inpainting") }
}

/// Compares a result with 0...255 reference pixels `[n, h, w, 3]` (PSNR >= 40 dB, max difference <= 16).
func assertImagesMatch(_ result: GenerationResult, pixels expected: Tensor, file: StaticString = #filePath, line: UInt = #line) throws {
    let images = try (0..<expected.shape[0]).map { try expected.slice(axis: 0, $0..<($0 + 1)).reshaped(Array(expected.shape.dropFirst())) }
    assertImagesMatch(result, images, file: file, line: line)
}

extension TinyModels {
    static var upscaler: URL { root.appendingPathComponent("tiny-sd-x4-upscaler") }
}

extension TinyModels {
    static var depth: URL { root.appendingPathComponent("tiny-sd2-depth") }
}
