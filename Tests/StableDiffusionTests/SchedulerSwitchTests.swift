import Foundation
import StableDiffusion
import XCTest

/// `--scheduler NAME` against diffusers' `from_config` (Fixtures/scheduler_switch, written by
/// Scripts/reference/gen_scheduler_switch_fixtures.py): 4 reference configs x 12 saved classes x 2 forms
/// (as saved by diffusers 0.42, and with `_use_default_values`) x the 12 CLI names; and explicit nulls.
final class SchedulerSwitchTests: XCTestCase {
    struct Case {
        let name: String
        let config: [String: JSONValue]
        let cli: String?
        let key: String?
        let error: String?
        let timesteps: [Double]?
        let sigmas: [Double]?
        let init_noise_sigma: Double?
        let generator: Int?
        let samples: Int?

        /// Read with the engine's parser: the configs hold `-Infinity` (DPM's lambda_min_clipped), as
        /// diffusers writes it, which Foundation's JSONDecoder refuses.
        init(_ v: JSONValue) {
            let o = v.objectValue ?? [:]
            name = o["name"]?.stringValue ?? "?"
            config = o["config"]?.objectValue ?? [:]
            cli = o["cli"]?.stringValue
            key = o["key"]?.stringValue
            error = o["error"]?.stringValue
            timesteps = o["timesteps"]?.arrayValue?.compactMap(\.doubleValue)
            sigmas = o["sigmas"]?.arrayValue?.compactMap(\.doubleValue)
            init_noise_sigma = o["init_noise_sigma"]?.doubleValue
            generator = o["generator"]?.intValue
            samples = o["samples"]?.intValue
        }
    }
    struct Fixture { let shape_nhwc: [Int]; let steps: Int; let switches: [Case]; let nulls: [Case] }

    static func load() throws -> (Fixture, [Float]) {
        let root = try FixturePaths.url("scheduler_switch")
        let json = try JSONValue.parse(Data(contentsOf: root.appendingPathComponent("cases.json")), file: "cases.json").objectValue ?? [:]
        let fixture = Fixture(shape_nhwc: json["shape_nhwc"]?.arrayValue?.compactMap(\.intValue) ?? [],
                              steps: json["steps"]?.intValue ?? 0,
                              switches: (json["switches"]?.arrayValue ?? []).map(Case.init),
                              nulls: (json["nulls"]?.arrayValue ?? []).map(Case.init))
        let data = try Data(contentsOf: root.appendingPathComponent("trajectories.bin"))
        let floats = data.withUnsafeBytes { raw in
            (0..<(data.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
        return (fixture, floats)
    }

    /// The sigmas of the schedulers that keep them (diffusers' `scheduler.sigmas`).
    static func sigmas(_ s: any Scheduler) -> [Float]? {
        switch s {
        case let e as EulerDiscreteScheduler: return e.sigmas
        case let e as EulerAncestralDiscreteScheduler: return e.sigmas
        case let h as HeunDiscreteScheduler: return h.sigmas
        case let d as DPMSolverMultistepScheduler: return d.sigmas
        default: return nil
        }
    }

    /// Runs `scheduler` as the fixture script does and returns the first failure, if any.
    static func compare(_ scheduler: any Scheduler, _ c: Case, shape: [Int], steps: Int, floats: [Float]) throws -> String? {
        var s = scheduler
        try s.setTimesteps(steps)
        let want = c.timesteps ?? []
        guard s.timesteps.count == want.count,
              zip(s.timesteps, want).allSatisfy({ abs($0 - $1) <= 1e-6 * max(abs($1), 1) }) else {
            return "timesteps \(s.timesteps) vs diffusers \(want)"
        }
        if let ws = c.sigmas, let ours = sigmas(s) {
            guard ours.count == ws.count, zip(ours, ws).allSatisfy({ abs(Double($0) - $1) <= 1e-5 * max(abs($1), 1) }) else {
                return "sigmas \(ours) vs diffusers \(ws)"
            }
        }
        if let w = c.init_noise_sigma, abs(Double(s.initNoiseSigma) - w) > 1e-6 * max(w, 1) {
            return "init_noise_sigma \(s.initNoiseSigma) vs diffusers \(w)"
        }
        let n = shape.reduce(1, *)
        guard let offset = c.samples else { return "fixture has no samples" }
        func slice(_ i: Int) -> ArraySlice<Float> { floats[offset + i * n..<offset + (i + 1) * n] }
        var gen: RandomGenerators? = c.generator.map { RandomGenerators(seed: UInt64($0)) }
        var sample = try Tensor(shape: shape, scalars: slice(0).map { $0 * s.initNoiseSigma })
        for (i, t) in s.timesteps.enumerated() {
            let input = try s.scaleModelInput(sample, timestep: t)
            sample = try s.step(modelOutput: SchedulerTests.model(input, t), timestep: t, sample: sample, generator: &gen)
            let err = SchedulerTests.relError(sample, slice(i + 1))
            if !(err < 1e-5) { return "step \(i) (t=\(t)) relative error \(err)" }
        }
        return nil
    }

    func testEveryCLISwitchMatchesDiffusersFromConfig() throws {
        let (fixture, floats) = try Self.load()
        XCTAssertEqual(fixture.switches.count, 1152, "4 configs x 12 saved classes x 2 forms x 12 names")
        var failures: [String] = []
        for c in fixture.switches {
            let config = SchedulerConfig(values: c.config, source: "\(c.name).json")
            do {
                let s = try Schedulers.make(cliName: c.cli ?? "", config: config)
                if let f = try Self.compare(s, c, shape: fixture.shape_nhwc, steps: fixture.steps, floats: floats) {
                    failures.append("\(c.name): \(f)")
                }
            } catch {
                failures.append("\(c.name): \(error)")
            }
        }
        XCTAssertTrue(failures.isEmpty, "\(failures.count) of \(fixture.switches.count) switches differ:\n" + failures.prefix(20).joined(separator: "\n"))
    }

    /// The keys whose null the engine refuses although diffusers, in the fixture's configuration, never
    /// reads them (it would fail as soon as it did: leading spacing, clipping). Refusing names the key.
    static let refusedUnusedNulls: Set<String> = ["steps_offset", "clip_sample_range"]

    func testExplicitNullMeansWhatNoneMeansInDiffusers() throws {
        let (fixture, floats) = try Self.load()
        XCTAssertGreaterThan(fixture.nulls.count, 100)
        var failures: [String] = []
        var refused: [String] = []
        for c in fixture.nulls {
            let key = c.key ?? ""
            let config = SchedulerConfig(values: c.config, source: "\(c.name).json")
            let result: Result<String?, Error> = Result {
                let s = try Schedulers.make(config: config)
                return try Self.compare(s, c, shape: fixture.shape_nhwc, steps: fixture.steps, floats: floats)
            }
            switch (c.error, result) {
            case (let diffusersError?, .success(let mismatch)):
                // diffusers fails (or ends in NaN); the engine must not quietly give a picture.
                if diffusersError != "non-finite result" || mismatch == nil {
                    failures.append("\(c.name): diffusers fails (\(diffusersError)) but the engine ran")
                }
            case (nil, .success(let mismatch?)):
                failures.append("\(c.name): \(mismatch)")
            case (nil, .failure(let error)):
                if Self.refusedUnusedNulls.contains(key) && "\(error)".contains(key) {
                    refused.append(c.name)
                } else {
                    failures.append("\(c.name): diffusers accepts null, the engine says \(error)")
                }
            case (_?, .failure(let error)):
                // Errors about a null must name the key.
                if !"\(error)".contains(key) { failures.append("\(c.name): error does not name \(key): \(error)") }
            case (nil, .success(nil)):
                break
            }
        }
        XCTAssertTrue(failures.isEmpty, failures.joined(separator: "\n"))
        print("null cases: \(fixture.nulls.count), refused although unused by diffusers here: \(refused.joined(separator: ", "))")
    }

    /// A folder whose scheduler config lists `timestep_spacing` in `_use_default_values`, switched with
    /// `--scheduler euler`: diffusers' picture (Euler's own linspace spacing, not PNDM's leading).
    func testCLISwitchOnConfigWithUsedDefaultsMatchesDiffusers() throws {
        let c = try PipelineCase("sd1_switch_euler_defaults")
        let model = try temporaryFolder(self)
        let fm = FileManager.default
        for item in ["model_index.json", "unet", "vae", "text_encoder", "tokenizer"] {
            try fm.createSymbolicLink(at: model.appendingPathComponent(item), withDestinationURL: TinyModels.sd1.appendingPathComponent(item))
        }
        try fm.createDirectory(at: model.appendingPathComponent("scheduler"), withIntermediateDirectories: false)
        try fm.copyItem(at: c.directory.appendingPathComponent("scheduler_config.json"),
                        to: model.appendingPathComponent("scheduler/scheduler_config.json"))
        let out = try temporaryFolder(self).appendingPathComponent("switch.png")
        let o = c.options
        let r = try SDProcess.run(["txt2img", "--model", model.path, "--prompt", o.prompts[0], "--negative-prompt", o.negativePrompts?[0] ?? "",
                                   "--height", "64", "--width", "64", "--steps", "\(o.numInferenceSteps)", "--seed", "\(o.seed ?? 0)",
                                   "--guidance-scale", "\(o.guidanceScale)", "--scheduler", "euler", "--output", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let (p, m) = psnr(try Image.load(path: out.path).pixels.map(Float.init), try c.expectedImages()[0].scalars)
        XCTAssertGreaterThanOrEqual(p, 40)
        XCTAssertLessThanOrEqual(m, 16)
    }
}
