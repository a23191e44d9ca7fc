import ArgumentParser
import Foundation
import StableDiffusion

/// SDXL's extra conditioning flags (diffusers' `prompt_2`, `negative_prompt_2`, `original_size`, `target_size`,
/// `crops_coords_top_left`, `aesthetic_score`, `negative_aesthetic_score`); SD 1.x/2.x models refuse them.
struct SDXLArguments: ParsableArguments {
    @Option(name: .customLong("prompt-2"), help: "SDXL: the prompt for the second text encoder (default: --prompt).")
    var prompt2: String?

    @Option(name: .customLong("negative-prompt-2"), help: "SDXL: the negative prompt for the second text encoder (default: --negative-prompt).")
    var negativePrompt2: String?

    @Option(help: "SDXL: the original-size conditioning, WxH (default: the output size).")
    var originalSize: String?

    @Option(help: "SDXL: the target-size conditioning, WxH (default: the output size).")
    var targetSize: String?

    @Option(help: "SDXL: the crop conditioning, TOP,LEFT in pixels (diffusers' crops_coords_top_left tuple; default 0,0).")
    var cropsCoordsTopLeft: String?

    @Option(help: "SDXL refiner: the aesthetic score conditioning (default 6.0).")
    var aestheticScore: Double?

    @Option(help: "SDXL refiner: the negative prompt's aesthetic score (default 2.5).")
    var negativeAestheticScore: Double?

    func validate() throws {
        _ = try size("--original-size", originalSize)
        _ = try size("--target-size", targetSize)
        _ = try crop()
        for (flag, v) in [("--aesthetic-score", aestheticScore), ("--negative-aesthetic-score", negativeAestheticScore)] {
            if let v, !v.isFinite { throw ValidationError("\(flag) must be a number, got \(v)") }
        }
    }

    /// `WxH` as `(height, width)`, diffusers' tuple order.
    private func size(_ flag: String, _ value: String?) throws -> (height: Int, width: Int)? {
        guard let value else { return nil }
        let parts = value.lowercased().split(separator: "x", omittingEmptySubsequences: false)
        guard parts.count == 2, let w = Int(parts[0]), let h = Int(parts[1]), w > 0, h > 0 else {
            throw ValidationError("\(flag) must be WIDTHxHEIGHT with positive integers, e.g. 1024x1024, got \(value)")
        }
        return (h, w)
    }

    private func crop() throws -> (top: Int, left: Int)? {
        guard let value = cropsCoordsTopLeft else { return nil }
        let parts = value.split(separator: ",", omittingEmptySubsequences: false)
        guard parts.count == 2, let top = Int(parts[0].trimmingCharacters(in: .whitespaces)),
              let left = Int(parts[1].trimmingCharacters(in: .whitespaces)), top >= 0, left >= 0 else {
            throw ValidationError("--crops-coords-top-left must be TOP,LEFT with integers >= 0, e.g. 0,0, got \(value)")
        }
        return (top, left)
    }

    func apply(to o: inout GenerationOptions) {
        o.prompts2 = prompt2.map { [$0] }
        o.negativePrompts2 = negativePrompt2.map { [$0] }
        if let s = try? size("--original-size", originalSize) { o.microConditioning.originalSize = s }
        if let s = try? size("--target-size", targetSize) { o.microConditioning.targetSize = s }
        if let c = try? crop() { o.microConditioning.cropsCoordsTopLeft = c }
        if let a = aestheticScore { o.microConditioning.aestheticScore = a }
        if let a = negativeAestheticScore { o.microConditioning.negativeAestheticScore = a }
    }
}
