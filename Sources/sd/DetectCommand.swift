import ArgumentParser
import Foundation
import StableDiffusion

/// `sd detect`: a ControlNet preprocessor alone (sd-webui-controlnet's `/controlnet/detect`), writing the control
/// image to give `--control-image`.
struct DetectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "detect", abstract: "Make a ControlNet control image (canny edges, depth) from a picture.")

    @Option(help: "The preprocessor: \(ControlPreprocessor.allCases.map(\.rawValue).joined(separator: ", ")).")
    var module: String

    @Option(help: "Input image (PNG or JPEG).")
    var image: String

    @Option(help: "Output PNG file.")
    var output: String

    @Option(help: "canny: the low threshold (default 100).")
    var low: Double = ControlPreprocessor.defaultCannyLow

    @Option(help: "canny: the high threshold (default 200).")
    var high: Double = ControlPreprocessor.defaultCannyHigh

    @Option(help: "depth: a depth-to-image model folder whose depth_estimator/ (DPT) estimates the depth.")
    var model: String?

    func validate() throws {
        guard let module = ControlPreprocessor(rawValue: module) else {
            throw ValidationError("--module must be one of \(ControlPreprocessor.allCases.map(\.rawValue).joined(separator: ", ")), got \(self.module)")
        }
        guard low.isFinite, high.isFinite, low >= 0, high >= 0 else {
            throw ValidationError("--low and --high must be numbers >= 0, got \(low) and \(high)")
        }
        if module == .depth {
            guard model != nil else { throw ValidationError("--module depth needs --model (a depth-to-image folder with depth_estimator/)") }
            try FlagChecks.folder("--model", model)
        } else if model != nil {
            throw ValidationError("--model applies to --module depth")
        }
        let dir = URL(fileURLWithPath: output).deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir.isEmpty ? "." : dir, isDirectory: &isDir), isDir.boolValue else {
            throw ValidationError("--output: folder \(dir) does not exist")
        }
    }

    func run() throws {
        let module = ControlPreprocessor(rawValue: self.module) ?? .none
        let input = try Image.load(path: image)
        let estimator = try model.map { try DepthEstimators.load(modelDirectory: URL(fileURLWithPath: $0, isDirectory: true)) }
        let result = try module.run(input, low: low, high: high, depthEstimator: estimator)
        try result.writePNG(to: output, textChunks: [])
        print(output)
    }
}
