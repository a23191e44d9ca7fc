import ArgumentParser
import Foundation
import StableDiffusion

/// `sd convert`: an original-layout single-file checkpoint to a diffusers folder.
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert", abstract: "Convert a single-file checkpoint (.safetensors/.ckpt) to a diffusers model folder.")

    @Option(help: "Single-file checkpoint in the original CompVis/Stability layout.")
    var from: String

    @Option(help: "Output folder (created; must not exist or be empty).")
    var to: String

    @Option(help: "A diffusers folder whose configs, tokenizer and scheduler to use instead of the bundled ones.")
    var config: String?

    @Option(help: "epsilon or v_prediction, overriding the detected one (for SD 2 it also picks the 512-base or 768 configs).")
    var predictionType: String?

    func validate() throws {
        guard case .singleFile = try? ModelLocation.classify(from) else {
            throw ValidationError("--from: \(from) is not a single-file checkpoint (.safetensors, .ckpt, .pt, .pth)")
        }
        if let p = predictionType, p != "epsilon", p != "v_prediction" {
            throw ValidationError("--prediction-type must be epsilon or v_prediction, got \(p)")
        }
    }

    func run() throws {
        let model = try SingleFileModel(url: URL(fileURLWithPath: from), configDirectory: config.map { URL(fileURLWithPath: $0, isDirectory: true) },
                                        predictionType: predictionType)
        if let d = model.detection {
            Console.error("\(from): \(d.kind.rawValue), \(d.predictionType), configs \(d.configName)\(d.usesEMA ? ", EMA weights" : "")")
        }
        try DiffusersFolderWriter.write(model, to: URL(fileURLWithPath: to, isDirectory: true))
        print(to)
    }
}
