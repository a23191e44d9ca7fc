import ArgumentParser
import Foundation
import StableDiffusion
import DiffusionTensor

extension ComputePrecision: ExpressibleByArgument {}

/// Checks of flags that several subcommands share (the generating commands and `sd serve`), written once.
enum FlagChecks {
    /// `--prediction-type`: epsilon or v_prediction.
    static func predictionType(_ value: String?) throws {
        if let p = value, p != "epsilon", p != "v_prediction" {
            throw ValidationError("--prediction-type must be epsilon or v_prediction, got \(p)")
        }
    }

    /// `--precision`: bf16 only where the CPU and build can run it (the reason names the flag).
    static func precision(_ value: ComputePrecision) throws {
        if let reason = value.unsupportedReason() { throw ValidationError(reason) }
    }

    /// `--weight-cache`: the folder is created if needed and must be writable; then the process keeps its
    /// converted weights there (`PackedWeightCache`).
    static func weightCache(_ path: String?) throws {
        guard let path else { return }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw ValidationError("--weight-cache: cannot create folder \(path): \(error.localizedDescription)")
        }
        guard access(path, W_OK) == 0 else { throw ValidationError("--weight-cache: folder \(path) is not writable") }
        PackedWeightCache.directory = URL(fileURLWithPath: path)
    }

    /// A flag naming a folder (`--config`, `--lora-dir`): it must exist and be a folder.
    static func folder(_ flag: String, _ path: String?) throws {
        guard let path else { return }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
            throw ValidationError("\(flag): \(path) is not a folder")
        }
    }
}
