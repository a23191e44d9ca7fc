import Foundation
import StableDiffusion
import XCTest

/// Scheduler trajectories against diffusers (Fixtures/schedulers, written by
/// Scripts/reference/gen_scheduler_fixtures.py): same config, same seeded start, same fake model.
final class SchedulerTests: XCTestCase {
    struct Case: Decodable {
        let name: String
        let config: [String: JSONValue]
        let steps: Int
        let timesteps: [Double]
        let init_noise_sigma: Double
        let order: Int
        let generator: JSONValue?
        /// The model also predicts a variance (DDPM `learned`/`learned_range`): see `learnedModel`.
        let learned_variance: Bool?
        /// img2img-style start: `setBeginIndex`, add_noise at that timestep, then the remaining steps from the noisy sample.
        let begin_index: Int?
        let noise_timesteps: [Double]
        let clean: Int, noise: Int, noisy: Int, initial: Int, trajectory: Int
    }
    struct Fixture: Decodable { let shape_nhwc: [Int]; let cases: [Case] }

    /// The classes whose fixture cases are checked (all of them).
    static let implemented: Set<String> = [
        "PNDMScheduler", "DDIMScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
        "DPMSolverMultistepScheduler", "DDPMScheduler", "LMSDiscreteScheduler", "HeunDiscreteScheduler",
        "UniPCMultistepScheduler",
    ]

    static func fixtures() throws -> (Fixture, [Float]) {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).appendingPathComponent("schedulers")
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: root.appendingPathComponent("cases.json")))
        let data = try Data(contentsOf: root.appendingPathComponent("trajectories.bin"))
        let floats = data.withUnsafeBytes { raw in
            (0..<(data.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
        return (fixture, floats)
    }

    /// The fake model of the fixture script: eps(x, t) = 0.95 x + (x^2 - 1) / (x^2 + 1) * (0.05 t / 1000), float32.
    static func model(_ x: Tensor, _ t: Double) throws -> Tensor {
        let c = Float(0.05 * t / 1000.0)
        return try Tensor(shape: x.shape, scalars: x.scalars.map { $0 * 0.95 + ($0 * $0 - 1) / ($0 * $0 + 1) * c })
    }

    /// The fixture script's `model_learned`: [eps, x^2 / (x^2 + 1) * 0.5] along channels (the last NHWC axis).
    static func learnedModel(_ x: Tensor, _ t: Double) throws -> Tensor {
        let eps = try model(x, t).scalars, xs = x.scalars
        guard let c = x.shape.last, c > 0 else { return x }
        var out: [Float] = []
        out.reserveCapacity(2 * xs.count)
        for p in 0..<(xs.count / c) {
            out += eps[p * c..<(p + 1) * c]
            out += xs[p * c..<(p + 1) * c].map { $0 * $0 / ($0 * $0 + 1) * 0.5 }
        }
        return try Tensor(shape: Array(x.shape.dropLast()) + [2 * c], scalars: out)
    }

    /// Largest error relative to the reference tensor's largest magnitude.
    static func relError(_ got: Tensor, _ want: ArraySlice<Float>) -> Float {
        let g = got.scalars
        let scale = max(want.map { abs($0) }.max() ?? 0, 1e-6)
        var worst: Float = 0
        for (a, b) in zip(g, want) { worst = max(worst, abs(a - b)) }
        return worst.isNaN || g.contains(where: \.isNaN) ? .infinity : worst / scale
    }

    func testTrajectoriesMatchDiffusers() throws {
        let (fixture, floats) = try Self.fixtures()
        let shape = fixture.shape_nhwc
        let n = shape.reduce(1, *)
        func slice(_ offset: Int) -> ArraySlice<Float> { floats[offset..<offset + n] }
        func tensor(_ offset: Int) throws -> Tensor { try Tensor(shape: shape, scalars: Array(slice(offset))) }
        var checked = 0
        var worst: [String: Float] = [:]
        for c in fixture.cases where Self.implemented.contains(c.config["_class_name"]?.stringValue ?? "") {
            let config = SchedulerConfig(values: c.config, source: "\(c.name).json")
            var s = try Schedulers.make(config: config)
            try s.setTimesteps(c.steps)
            // Integer timesteps must be equal; sigma-derived ones (Karras) may differ by an ulp of float32,
            // as numpy's float32 log is not glibc's.
            XCTAssertEqual(s.timesteps.count, c.timesteps.count, "\(c.name): timesteps")
            for (a, b) in zip(s.timesteps, c.timesteps) {
                XCTAssertEqual(a, b, accuracy: 1e-6 * max(abs(b), 1), "\(c.name): timesteps \(s.timesteps) vs \(c.timesteps)")
            }
            XCTAssertEqual(s.order, c.order, "\(c.name): order")
            XCTAssertEqual(Double(s.initNoiseSigma), c.init_noise_sigma, accuracy: 1e-6 * c.init_noise_sigma, "\(c.name): init_noise_sigma")

            if let b = c.begin_index { s.setBeginIndex(b) }
            let noisy = try s.addNoise(originalSamples: tensor(c.clean), noise: tensor(c.noise), timesteps: c.noise_timesteps)
            XCTAssertLessThan(Self.relError(noisy, slice(c.noisy)), 1e-6, "\(c.name): add_noise")

            var gen: RandomGenerators?
            switch c.generator {
            case .int(let seed)?: gen = RandomGenerators(seed: UInt64(seed))
            case .array(let seeds)?:
                gen = try RandomGenerators(perImage: seeds.map { if case .int(let v) = $0 { TorchGenerator(seed: UInt64(v)) } else { TorchGenerator(seed: 0) } })
            default: gen = nil
            }
            let sigma = s.initNoiseSigma
            var sample = try tensor(c.initial).reshaped(shape)
            sample = try Tensor(shape: shape, scalars: sample.scalars.map { $0 * sigma })
            if c.begin_index != nil { sample = noisy }
            for (i, t) in s.timesteps.dropFirst(c.begin_index ?? 0).enumerated() {
                let input = try s.scaleModelInput(sample, timestep: t)
                let eps = try c.learned_variance == true ? Self.learnedModel(input, t) : Self.model(input, t)
                sample = try s.step(modelOutput: eps, timestep: t, sample: sample, generator: &gen)
                let err = Self.relError(sample, slice(c.trajectory + i * n))
                worst[c.name.components(separatedBy: "-")[0], default: 0] = max(worst[c.name.components(separatedBy: "-")[0], default: 0], err)
                if !(err < 1e-5) {
                    XCTFail("\(c.name): step \(i) (t=\(t)) relative error \(err)")
                    break
                }
            }
            checked += 1
        }
        XCTAssertGreaterThan(checked, 0)
        print("checked \(checked) scheduler trajectories; worst relative error per class: \(worst.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
    }

    func testFactoryNamesAndErrors() throws {
        let base = SchedulerConfig(values: ["_class_name": .string("PNDMScheduler"), "beta_schedule": .string("scaled_linear")], source: "sched.json")
        XCTAssertEqual(try Schedulers.make(config: base).kind, .pndm)
        XCTAssertEqual(try Schedulers.make(cliName: "euler-a", config: base).kind, .eulerAncestral)
        XCTAssertEqual(try Schedulers.make(cliName: "ddim", config: base).kind, .ddim)
        XCTAssertThrowsError(try Schedulers.make(cliName: "nope", config: base))

        var bad = base
        bad.values["_class_name"] = .string("FancyScheduler")
        XCTAssertThrowsError(try Schedulers.make(config: bad)) { error in
            XCTAssertTrue("\(error)".contains("sched.json") && "\(error)".contains("FancyScheduler"), "\(error)")
        }
        bad = base
        bad.values["beta_schedule"] = .string("quadratic")
        XCTAssertThrowsError(try Schedulers.make(config: bad)) { error in
            XCTAssertTrue("\(error)".contains("sched.json") && "\(error)".contains("beta_schedule"), "\(error)")
        }
        bad = base
        bad.values["steps_offset"] = .string("one")
        XCTAssertThrowsError(try Schedulers.make(config: bad)) { error in
            XCTAssertTrue("\(error)".contains("steps_offset"), "\(error)")
        }
        let json = Data(#"{"_class_name": "EulerDiscreteScheduler", "prediction_type": "epsilon", "trained_betas": null}"#.utf8)
        XCTAssertEqual(try Schedulers.make(config: SchedulerConfig(jsonData: json, source: "x.json")).kind, .euler)
        XCTAssertThrowsError(try SchedulerConfig(jsonData: Data("[1]".utf8), source: "x.json"))
    }

    /// Every `--scheduler` name works on Stable Diffusion 1.x's config, and runs a short loop.
    func testCLINames() throws {
        let json = Data(#"{"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null, "clip_sample": false}"#.utf8)
        let config = try SchedulerConfig(jsonData: json, source: "scheduler_config.json")
        let expected: [String: SchedulerKind] = [
            "pndm": .pndm, "ddim": .ddim, "ddpm": .ddpm, "lms": .lms, "euler": .euler, "euler-a": .eulerAncestral,
            "heun": .heun, "dpm++2m": .dpmSolverMultistep, "dpm++2m-karras": .dpmSolverMultistep, "unipc": .unipc, "lcm": .lcm, "tcd": .tcd,
        ]
        XCTAssertEqual(Set(Schedulers.cliNames), Set(expected.keys))
        var timesteps: [String: [Double]] = [:]
        for name in Schedulers.cliNames {
            var s = try Schedulers.make(cliName: name, config: config)
            XCTAssertEqual(s.kind, expected[name], name)
            try s.setTimesteps(5)
            timesteps[name] = s.timesteps
            var start = RandomGenerators(seed: 0)
            let noise = try start.randn(shape: [1, 2, 2, 4])
            var x = try Tensor(shape: noise.shape, scalars: noise.scalars.map { $0 * s.initNoiseSigma })
            var gen: RandomGenerators? = RandomGenerators(seed: 1)
            for t in s.timesteps {
                let input = try s.scaleModelInput(x, timestep: t)
                x = try s.step(modelOutput: Self.model(input, t), timestep: t, sample: x, generator: &gen)
            }
            XCTAssertFalse(x.scalars.contains { !$0.isFinite }, name)
        }
        // dpm++2m-karras differs from dpm++2m only by its Karras timesteps.
        XCTAssertNotEqual(timesteps["dpm++2m"], timesteps["dpm++2m-karras"])
        XCTAssertEqual(timesteps["heun"]?.count, 9)
    }

    /// Options diffusers cannot run (or that give NaN there) are errors naming the key.
    func testUnsupportedOptionsNameTheKey() throws {
        func expectError(_ values: [String: JSONValue], _ key: String, line: UInt = #line) {
            XCTAssertThrowsError(try Schedulers.make(config: SchedulerConfig(values: values, source: "s.json")), line: line) { error in
                XCTAssertTrue("\(error)".contains(key) && "\(error)".contains("s.json"), "\(error)", line: line)
            }
        }
        expectError(["_class_name": .string("DDPMScheduler"), "variance_type": .string("fixed_large_log")], "variance_type")
        expectError(["_class_name": .string("DPMSolverMultistepScheduler"), "algorithm_type": .string("dpmsolver")], "final_sigmas_type")
        expectError(["_class_name": .string("DPMSolverMultistepScheduler"), "solver_order": .int(4)], "solver_order")
        expectError(["_class_name": .string("DPMSolverMultistepScheduler"), "algorithm_type": .string("deis")], "final_sigmas_type")
        expectError(["_class_name": .string("DPMSolverMultistepScheduler"), "use_beta_sigmas": .bool(true)], "use_beta_sigmas")
        expectError(["_class_name": .string("UniPCMultistepScheduler"), "solver_type": .string("bh3")], "solver_type")
        expectError(["_class_name": .string("UniPCMultistepScheduler"), "disable_corrector": .string("0")], "disable_corrector")
        expectError(["_class_name": .string("LMSDiscreteScheduler"), "beta_schedule": .string("sigmoid")], "beta_schedule")
        expectError(["_class_name": .string("HeunDiscreteScheduler"), "prediction_type": .string("flow_prediction")], "prediction_type")
        // The schedules are arrays of num_train_timesteps: a huge count is refused before allocating (found by fuzzing).
        expectError(["_class_name": .string("EulerDiscreteScheduler"), "num_train_timesteps": .int(1_000_000_000)], "num_train_timesteps")
        // A JSON integer too large for Int arrives as a double and is not a valid count.
        let big = Data(#"{"_class_name": "EulerDiscreteScheduler", "num_train_timesteps": 100000000000000000000000}"#.utf8)
        XCTAssertThrowsError(try Schedulers.make(config: SchedulerConfig(jsonData: big, source: "s.json"))) { error in
            XCTAssertTrue("\(error)".contains("num_train_timesteps"), "\(error)")
        }
        // DDPM's learned variances need the model's variance channels.
        var ddpm = try Schedulers.make(config: SchedulerConfig(values: ["_class_name": .string("DDPMScheduler"), "variance_type": .string("learned")]))
        try ddpm.setTimesteps(3)
        let x = Tensor(zeros: [1, 2, 2, 4])
        var gen: RandomGenerators? = RandomGenerators(seed: 1)
        XCTAssertThrowsError(try ddpm.step(modelOutput: x, timestep: ddpm.timesteps[0], sample: x, generator: &gen))
    }

    func testAncestralStepNeedsGenerator() throws {
        var s = try Schedulers.make(cliName: "euler-a", config: SchedulerConfig())
        try s.setTimesteps(3)
        let x = Tensor(zeros: [1, 2, 2, 4])
        XCTAssertThrowsError(try s.step(modelOutput: x, timestep: s.timesteps[0], sample: x))
    }
}
