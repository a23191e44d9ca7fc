import ArgumentParser
import StableDiffusion

struct SD: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sd", abstract: "Stable Diffusion, natively in Swift.")
}
SD.main()
