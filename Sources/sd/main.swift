import ArgumentParser
import StableDiffusion

struct SD: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sd",
        abstract: "Stable Diffusion, natively in Swift.",
        subcommands: SubcommandRegistry.all)
}

/// Each subcommand lives in its own file; this list is the one place that names them.
enum SubcommandRegistry {
    static let all: [any ParsableCommand.Type] = [BenchCommand.self]
}

SD.main()
