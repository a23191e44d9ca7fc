import Foundation
import StableDiffusion

/// Progress on stderr: a bar redrawn in place on a terminal, plain lines otherwise (logs, pipes).
final class ProgressBar: @unchecked Sendable {
    private let interactive = isatty(STDERR_FILENO) != 0
    private var lastLine = Date.distantPast

    func update(_ p: PipelineProgress) -> Bool {
        let rate = String(format: "%.2f steps/s", p.stepsPerSecond)
        if interactive {
            let width = 30
            let filled = p.totalSteps > 0 ? width * p.step / p.totalSteps : width
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            FileHandle.standardError.write(Data("\r[\(bar)] \(p.step)/\(p.totalSteps) \(rate)".utf8))
            if p.step == p.totalSteps { FileHandle.standardError.write(Data("\n".utf8)) }
        } else if p.step == p.totalSteps || p.step == 1 || Date().timeIntervalSince(lastLine) >= 2 {
            lastLine = Date()
            Console.error("step \(p.step)/\(p.totalSteps) (\(rate))")
        }
        return true
    }
}
