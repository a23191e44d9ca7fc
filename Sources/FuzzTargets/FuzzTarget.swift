import Foundation

/// One fuzz target per parser entry point a user file or a client request reaches. Each takes arbitrary
/// bytes and drives the engine's public (or package) API as the CLI and server do; the contract is that
/// the engine returns a value or throws, never traps, reads out of bounds or allocates without a bound.
/// The libFuzzer driver (`Fuzz/`) and the regression tests (replaying crashes found) both call `run`.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// A safetensors file: header, then every tensor converted to fp32.
    case safetensors
    /// A torch.save file (zip or legacy pickle): the pickle VM, then every tensor of the state dict.
    case torch
    /// A JSON config read as every config type (UNet, VAE, CLIP, DPT, scheduler + timesteps, model_index).
    case config
    /// Tokenizer files: tokenizer.json, or vocab.json + merges.txt (+ tokenizer_config.json), NUL-separated.
    case tokenizer
    /// PNG or JPEG bytes through the engine's codecs (and its 16-bit grayscale and text-chunk readers).
    case image
    /// A depth-map file (.npy, .pt, .safetensors or 16-bit PNG, chosen by the leading bytes).
    case depthmap
    /// A LoRA or textual-inversion file, merged into the tiny SD 1 UNet and text encoder.
    case adapters
    /// A single-file checkpoint: detection, bundled configs and the key conversion, reading every tensor.
    case singlefile
    /// A server request body: byte 0 picks the endpoint and the model kind (see `ServerRequestTarget`).
    case server

    /// Feeds one input. A thrown error is a valid outcome; its message is still built (that code runs too).
    public func run(_ data: [UInt8]) {
        do {
            switch self {
            case .safetensors: try TensorFileTargets.safetensors(data)
            case .torch: try TensorFileTargets.torch(data)
            case .config: try ConfigTarget.run(data)
            case .tokenizer: try TokenizerTarget.run(data)
            case .image: try ImageTargets.image(data)
            case .depthmap: try ImageTargets.depthMap(data)
            case .adapters: try AdapterTarget.run(data)
            case .singlefile: try SingleFileTarget.run(data)
            case .server: try ServerRequestTarget.run(data)
            }
        } catch {
            _ = String(describing: error)
        }
    }
}

/// The tiny models checked in under `Models/` (bases for LoRAs, configs for single files, served models).
enum TinyModels {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Models")
    static func url(_ name: String) -> URL { root.appendingPathComponent(name) }
}
