import Foundation
import StableDiffusion

/// The original-layout checkpoints made from the tiny models and diffusers' `from_single_file` pictures
/// (Scripts/reference/gen_single_file_fixtures.py).
enum SingleFileFixtures {
    static func checkpoint(_ name: String) throws -> URL { try FixturePaths.url("single_file/checkpoints/\(name)") }
}

extension PipelineCase {
    /// A case under Fixtures/single_file/ (case.json + tensors.safetensors with image0).
    init(singleFile name: String) throws { try self.init(fixture: "single_file/\(name)") }
}
