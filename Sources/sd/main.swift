import ArgumentParser
import Foundation
import StableDiffusion

struct SD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sd",
        abstract: "Stable Diffusion, natively in Swift: the diffusers pipelines on diffusers model folders.",
        subcommands: SubcommandRegistry.all)
}

/// Each subcommand lives in its own file; this list is the one place that names them.
enum SubcommandRegistry {
    static let all: [any ParsableCommand.Type] = [
        Txt2ImgCommand.self, Img2ImgCommand.self, InpaintCommand.self, Depth2ImgCommand.self, UpscaleCommand.self, DetectCommand.self, TokenizeCommand.self,
        BenchCommand.self, ConvertCommand.self, DownloadCommand.self, ServeCommand.self, WorkerCommand.self, QueueCommand.self,
    ]
}

// Every failure (bad flag, bad model folder, bad image) is a message on stderr and exit status 1;
// --help and friends keep their own status.
do {
    var command = try SD.parseAsRoot()
    try command.run()
} catch {
    let code = SD.exitCode(for: error)
    if code == .success { SD.exit(withError: error) }
    if let exit = error as? ExitCode { Foundation.exit(exit.rawValue == 0 ? 0 : 1) }
    Console.error("sd: error: \(SD.message(for: error))")
    if code == .validationFailure { Console.error("Run 'sd help <subcommand>' for usage.") }
    Foundation.exit(1)
}
