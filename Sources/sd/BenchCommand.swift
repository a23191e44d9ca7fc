import ArgumentParser
import Foundation
import StableDiffusion

/// `sd bench`: timings on this machine with random weights (no weight files needed).
///
/// `--suite ops` times the two kernels that dominate (a 3x3 convolution and a GEMM); `--suite sd15` builds
/// the real SD 1.5 architecture from its configs and times what `Scripts/reference/bench_torch.py` times
/// for PyTorch, so `Scripts/bench/compare.sh` can put the two side by side.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure kernels, or the SD 1.5 architecture with random weights (min and median of several runs).")

    enum Suite: String, ExpressibleByArgument, CaseIterable { case ops, sd15, sdxl, turbo }

    @Option(help: "ops: conv2d, GEMM and attention (fp32, and bf16 where the CPU has it) GFLOP/s; sd15: UNet 256/512, ControlNet + UNet 512, text encoder, VAE decode 512, 20-step txt2img 512; sdxl: UNet 1024 (batch 2), both text encoders, VAE decode 1024; turbo: SD-Turbo's networks (SD 2.1 base, batch 1, no guidance) UNet 512, text encoder, TAESD decode 512, and their sum.")
    var suite: Suite = .ops

    @Option(help: "Timed runs per case (after one warm-up run).")
    var runs: Int = 5

    @Option(help: "The SD 1.5 folder of configs (unet/, vae/, text_encoder/, scheduler/ config files); default: the bundled SD 1.5 configs.")
    var configs: String?

    @Option(help: "A tokenizer folder for the txt2img case (any CLIP tokenizer; ids stay within the vocabulary).")
    var tokenizer: String = "Models/tiny-sd1/tokenizer"

    @Option(parsing: .upToNextOption, help: "Run only these cases (sd15: unet_256 unet_512 controlnet_unet_512 text_encoder vae_decode_512 taesd_decode_512 txt2img_20_512; sdxl: unet_1024 text_encoder text_encoder_2 vae_decode_1024; turbo: unet_512_b1 text_encoder_b1 taesd_decode_512; ops: the names it prints).")
    var only: [String] = []

    @Option(help: "fp32 or bf16: what the convolutions and linear layers compute in (sd15: each model as a pipeline loads it).")
    var precision: ComputePrecision = .fp32

    @Flag(help: "Print one JSON object (for Scripts/bench/compare.py).")
    var json = false

    @Flag(help: "Run the portable Swift kernels instead of the AVX-512 ones, to measure what those gain.")
    var portableKernels = false

    func validate() throws {
        guard runs >= 1 else { throw ValidationError("--runs must be >= 1") }
        try FlagChecks.precision(precision)
    }

    struct Measurement: Encodable {
        let min: Double, median: Double
        let gflop: Double?
    }

    func run() throws {
        if portableKernels { KernelDispatch.native = false }
        var results: [(String, Measurement)] = []
        switch suite {
        case .ops: results = try opsSuite()
        case .sd15: results = try sd15Suite()
        case .sdxl: results = try sdxlSuite()
        case .turbo: results = try turboSuite()
        }
        let peak = ProcessMemory.peakResidentBytes
        if json {
            var object: [String: Any] = ["engine": "swift", "peak_rss_bytes": peak, "precision": precision.rawValue]
            var cases: [String: Any] = [:]
            for (name, m) in results {
                var c: [String: Any] = ["min": m.min, "median": m.median]
                if let g = m.gflop { c["gflop"] = g }
                cases[name] = c
            }
            object["results"] = cases
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("case                 min s     median s   GFLOP    GFLOP/s (min / median)")
            for (name, m) in results {
                let pad = name.padding(toLength: 20, withPad: " ", startingAt: 0)
                if let g = m.gflop {
                    print(String(format: "%@ %8.3f   %8.3f   %7.1f   %6.1f / %6.1f", pad, m.min, m.median, g, g / m.min, g / m.median))
                } else {
                    print(String(format: "%@ %8.3f   %8.3f", pad, m.min, m.median))
                }
            }
            print(String(format: "peak resident memory %.0f MiB (precision %@)", Double(peak) / 1_048_576, precision.rawValue))
        }
    }

    private func wanted(_ name: String) -> Bool { only.isEmpty || only.contains(name) }

    private func opsSuite() throws -> [(String, Measurement)] {
        let conv = try Conv2D(weight: Self.random([320, 320, 3, 3], scale: 0.02), bias: Self.random([320]), padding: .uniform(1),
                              precision: precision)
        let x = Self.random([2, 64, 64, 320])
        let lin = try Linear(weight: Self.random([1280, 320], scale: 0.05), bias: nil, precision: precision)
        let y = Self.random([4096, 320])
        // SD 1.5's first-level attention at 512x512 (batch 2 with guidance, 8 heads of 40): self over 4096
        // tokens, cross over the 77 prompt tokens.
        let q = Self.random([2, 4096, 320]), k = Self.random([2, 4096, 320]), v = Self.random([2, 4096, 320])
        let kc = Self.random([2, 77, 320]), vc = Self.random([2, 77, 320])
        // The resnet block's GroupNorm + SiLU and the transformer block's LayerNorm at the first level.
        let gamma = Self.random([320]), beta = Self.random([320])
        let tokens = Self.random([2, 4096, 320])
        let cases: [(String, () throws -> Void)] = [
            ("conv3x3_2x64x64x320", { _ = try conv(x) }),
            ("groupnorm_silu_2x64x64x320", { _ = try x.groupNorm(groups: 32, gamma: gamma, beta: beta, eps: 1e-5, activation: .silu) }),
            ("layernorm_2x4096x320", { _ = try tokens.layerNorm(gamma: gamma, beta: beta, eps: 1e-5) }),
            ("matmul_4096x320x1280", { _ = try lin(y) }),
            ("attention_self_2x4096x8x40", { _ = try Attention.scaledDotProduct(query: q, key: k, value: v, heads: 8) }),
            ("attention_cross_2x4096x77x8x40", { _ = try Attention.scaledDotProduct(query: q, key: kc, value: vc, heads: 8) }),
        ] + (Attention.bfloat16Available ? [
            ("attention_self_bf16", { _ = try Attention.scaledDotProduct(query: q, key: k, value: v, heads: 8, precision: .bf16) }),
            ("attention_cross_bf16", { _ = try Attention.scaledDotProduct(query: q, key: kc, value: vc, heads: 8, precision: .bf16) }),
        ] : []) + (Attention.amxAvailable ? [
            // The AVX-512 bf16 kernel where AMX would run (the default picks AMX).
            ("attention_self_bf16_avx512", {
                Attention.bf16KernelOverride = .avx512
                defer { Attention.bf16KernelOverride = nil }
                _ = try Attention.scaledDotProduct(query: q, key: k, value: v, heads: 8, precision: .bf16)
            }),
        ] : []) + (try winogradCases()) + (try sdxlMatmulCases())
        return try cases.filter { wanted($0.0) }.map { ($0.0, try measure($0.1)) }
    }

    /// The SDXL UNet's largest linear layers and its self-attention at 1024x1024 (batch 2), only when named with `--only`.
    private func sdxlMatmulCases() throws -> [(String, () throws -> Void)] {
        var cases: [(String, () throws -> Void)] = []
        for (rows, i, o) in [(2048, 1280, 10240), (2048, 1280, 1280), (2048, 5120, 1280), (8192, 640, 5120), (8192, 640, 640)] {
            let name = "matmul_\(rows)x\(i)x\(o)"
            guard only.contains(name) else { continue }
            let layer = try Linear(weight: Self.random([o, i], scale: 0.05), bias: nil, precision: precision)
            let x = Self.random([rows, i])
            cases.append((name, { _ = try layer(x) }))
        }
        // Its self-attention at the second and third levels (heads of 64).
        for (tokens, heads) in [(4096, 10), (1024, 20)] {
            let name = "attention_self_2x\(tokens)x\(heads)x64"
            guard only.contains(name) else { continue }
            let q = Self.random([2, tokens, heads * 64]), k = Self.random([2, tokens, heads * 64]), v = Self.random([2, tokens, heads * 64])
            let p = precision
            cases.append((name, { _ = try Attention.scaledDotProduct(query: q, key: k, value: v, heads: heads, precision: p) }))
            if p == .bf16, Attention.amxAvailable, only.contains(name + "_avx512") {
                cases.append((name + "_avx512", {
                    Attention.bf16KernelOverride = .avx512
                    defer { Attention.bf16KernelOverride = nil }
                    _ = try Attention.scaledDotProduct(query: q, key: k, value: v, heads: heads, precision: p)
                }))
            }
        }
        return cases
    }

    /// bf16 only: the UNet's 3x3 convolution shapes (batch 2, SD 1.5 at 512x512 and SDXL at 1024x1024), direct
    /// against Winograd F(2x2, 3x3), to place `Conv2D.prefersWinograd`'s threshold.
    private func winogradCases() throws -> [(String, () throws -> Void)] {
        guard precision == .bf16 else { return [] }
        var cases: [(String, () throws -> Void)] = []
        for (size, channels) in [(128, 320), (64, 320), (64, 640), (32, 640), (32, 1280), (16, 1280), (8, 1280)] {
            let name = "conv3x3_2x\(size)x\(size)x\(channels)"
            guard only.contains(where: { $0.hasPrefix(name) }) || (only.isEmpty && size <= 64) else { continue }
            let direct = try Conv2D(weight: Self.random([channels, channels, 3, 3], scale: 0.02), bias: Self.random([channels]),
                                    padding: .uniform(1), precision: precision, algorithm: .direct)
            let winograd = try Conv2D(weight: Self.random([channels, channels, 3, 3], scale: 0.02), bias: Self.random([channels]),
                                      padding: .uniform(1), precision: precision, algorithm: .winograd)
            let x = Self.random([2, size, size, channels])
            cases.append(("\(name)_direct", { _ = try direct(x) }))
            cases.append(("\(name)_winograd", { _ = try winograd(x) }))
        }
        return cases
    }

    private func sd15Suite() throws -> [(String, Measurement)] {
        let root = try configs.map { URL(fileURLWithPath: $0) } ?? DiffusersConfigFolder.bundled("runwayml-stable-diffusion-v1-5").root
        let weights = RandomTensorSource()
        let log = { (s: String) in if !json { FileHandle.standardError.write(Data((s + "\n").utf8)) } }
        var start = Date()
        let unet = try UNet2DConditionModel(config: UNet2DConditionConfig.load(root.appendingPathComponent("unet/config.json")), weights: weights,
                                            precision: precision.forModel(.unet))
        let vae = try AutoencoderKL(config: AutoencoderKLConfig.load(root.appendingPathComponent("vae/config.json")), weights: weights,
                                    includeEncoder: false, precision: precision.forModel(.vae))
        let textEncoder = try CLIPTextModel(config: CLIPTextConfig.load(from: root.appendingPathComponent("text_encoder")), weights: weights,
                                            precision: precision.forModel(.textEncoder))
        log(String(format: "built SD 1.5 (UNet, VAE decoder, text encoder) with random weights in %.1f s (%@)",
                   Date().timeIntervalSince(start), precision.rawValue))
        var results: [(String, Measurement)] = []
        let context = RandomTensorSource(seed: 2, scale: 1).makeTensor("ctx", shape: [2, 77, unet.config.crossAttentionDim[0]])
        for size in [256, 512] where wanted("unet_\(size)") {
            let x = RandomTensorSource(seed: 1, scale: 1).makeTensor("x", shape: [2, size / 8, size / 8, 4])
            results.append(("unet_\(size)", try measure { _ = try unet(sample: x, timesteps: [500], encoderHiddenStates: context) }))
            log("unet_\(size) done")
        }
        if wanted("controlnet_unet_512") {
            // One guided step with a ControlNet (control_v11p_sd15_canny's config): the ControlNet on the
            // batch, then the UNet with its residuals, as the ControlNet pipelines run each step.
            let controlNet = try ControlNetModel(config: ControlNetConfig.load(ControlNetConfig.bundledSD15URL()), weights: weights, precision: precision.forModel(.unet))
            let x = RandomTensorSource(seed: 1, scale: 1).makeTensor("x", shape: [2, 64, 64, 4])
            let hint = RandomTensorSource(seed: 4, scale: 1).makeTensor("hint", shape: [2, 512, 512, 3])
            var conditioning = UNetConditioning(encoderHiddenStates: context)
            results.append(("controlnet_unet_512", try measure {
                conditioning.controlResiduals = try controlNet(sample: x, timesteps: [500], conditioning: conditioning, controlImage: hint)
                _ = try unet(sample: x, timesteps: [500], conditioning: conditioning)
            }))
            log("controlnet_unet_512 done")
        }
        if wanted("text_encoder") {
            let ids = (0..<2).map { r in (0..<77).map { ($0 * 131 + r * 7) % textEncoder.config.vocabSize } }
            results.append(("text_encoder", try measure { _ = try textEncoder(inputIds: ids) }))
        }
        if wanted("vae_decode_512") {
            let z = RandomTensorSource(seed: 3, scale: 1).makeTensor("z", shape: [1, 64, 64, 4])
            results.append(("vae_decode_512", try measure { _ = try vae.decode(z) }))
            log("vae_decode_512 done")
        }
        if wanted("taesd_decode_512") { results.append(("taesd_decode_512", try taesdDecode512())) }
        if wanted("txt2img_20_512") {
            start = Date()
            let components = StableDiffusionComponents(
                index: ModelIndex(pipelineClass: "StableDiffusionPipeline", components: [:]),
                tokenizer: try CLIPTokenizer(directory: URL(fileURLWithPath: tokenizer)), textEncoder: textEncoder,
                unet: unet, vae: vae, schedulerConfig: try SchedulerConfig(contentsOf: root.appendingPathComponent("scheduler/scheduler_config.json")),
                precision: precision)
            let pipe = try StableDiffusionPipeline(components: components)
            var options = GenerationOptions(prompt: "a photograph of an astronaut riding a horse")
            options.numInferenceSteps = 20
            options.height = 512
            options.width = 512
            options.seed = 0
            results.append(("txt2img_20_512", try measure(runs: max(1, runs - 1)) { _ = try pipe(options) }))
        }
        return results
    }

    /// SDXL base 1.0's architecture from its bundled configs (or `--configs`), random weights: the UNet step at
    /// 1024x1024 with guidance (batch 2: 128x128 latents, 2048-wide context, pooled embeds and 6 time ids),
    /// CLIP ViT-L and OpenCLIP bigG (with projection) on 77 tokens, the VAE decode of a 1024x1024 picture.
    private func sdxlSuite() throws -> [(String, Measurement)] {
        let root = try configs.map { URL(fileURLWithPath: $0) } ?? DiffusersConfigFolder.bundled("stabilityai-stable-diffusion-xl-base-1.0").root
        let weights = RandomTensorSource()
        let log = { (s: String) in if !json { FileHandle.standardError.write(Data((s + "\n").utf8)) } }
        var results: [(String, Measurement)] = []
        let start = Date()
        let unetConfig = try UNet2DConditionConfig.load(root.appendingPathComponent("unet/config.json"))
        if wanted("unet_1024") {
            let unet = try UNet2DConditionModel(config: unetConfig, weights: weights, precision: precision.forModel(.unet))
            log(String(format: "built the SDXL UNet with random weights in %.1f s (%@)", Date().timeIntervalSince(start), precision.rawValue))
            let random = RandomTensorSource(seed: 1, scale: 1)
            let x = random.makeTensor("x", shape: [2, 128, 128, unetConfig.inChannels])
            let context = random.makeTensor("ctx", shape: [2, 77, unetConfig.crossAttentionDim[0]])
            let pooled = random.makeTensor("pooled", shape: [2, (unetConfig.textTimeEmbedding?.inputDim ?? 2816) - 6 * (unetConfig.textTimeEmbedding?.timeEmbedDim ?? 256)])
            let ids = try Tensor(shape: [2, 6], scalars: [1024, 1024, 0, 0, 1024, 1024, 1024, 1024, 0, 0, 1024, 1024])
            let conditioning = UNetConditioning(encoderHiddenStates: context, textTime: .init(textEmbeds: pooled, timeIds: ids))
            results.append(("unet_1024", try measure { _ = try unet(sample: x, timesteps: [500], conditioning: conditioning) }))
            log("unet_1024 done")
        }
        for (name, folder, projection) in [("text_encoder", "text_encoder", false), ("text_encoder_2", "text_encoder_2", true)] where wanted(name) {
            let encoder = try CLIPTextModel(config: CLIPTextConfig.load(from: root.appendingPathComponent(folder)), weights: weights,
                                            precision: precision.forModel(.textEncoder), withProjection: projection)
            let ids = (0..<2).map { r in (0..<77).map { ($0 * 131 + r * 7) % encoder.config.vocabSize } }
            results.append((name, try measure { _ = try encoder(inputIds: ids) }))
        }
        if wanted("vae_decode_1024") {
            let vae = try AutoencoderKL(config: AutoencoderKLConfig.load(root.appendingPathComponent("vae/config.json")), weights: weights,
                                        includeEncoder: false, precision: precision.forModel(.vae))
            let z = RandomTensorSource(seed: 3, scale: 1).makeTensor("z", shape: [1, 128, 128, 4])
            // Whole, as a pipeline decodes 1024x1024 (tiling starts above TiledDecoding's 1024x1024 threshold).
            results.append(("vae_decode_1024", try measure { _ = try vae.decode(z) }))
            log("vae_decode_1024 done")
        }
        return results
    }

    /// What one SD-Turbo picture costs in networks alone (SD 2.1 base's bundled configs, random weights): one
    /// batch-1 UNet call at 512x512 (guidance 0 runs no unconditional batch), the text encoder on one 77-token
    /// prompt, and the TAESD decode. `networks` is their sum: the time a hot request cannot go below.
    private func turboSuite() throws -> [(String, Measurement)] {
        let root = try configs.map { URL(fileURLWithPath: $0) } ?? DiffusersConfigFolder.bundled("stabilityai-stable-diffusion-2-1-base").root
        let weights = RandomTensorSource()
        var results: [(String, Measurement)] = []
        if wanted("unet_512_b1") {
            let config = try UNet2DConditionConfig.load(root.appendingPathComponent("unet/config.json"))
            let unet = try UNet2DConditionModel(config: config, weights: weights, precision: precision.forModel(.unet))
            let x = RandomTensorSource(seed: 1, scale: 1).makeTensor("x", shape: [1, 64, 64, config.inChannels])
            let context = RandomTensorSource(seed: 2, scale: 1).makeTensor("ctx", shape: [1, 77, config.crossAttentionDim[0]])
            results.append(("unet_512_b1", try measure { _ = try unet(sample: x, timesteps: [999], encoderHiddenStates: context) }))
        }
        if wanted("text_encoder_b1") {
            let encoder = try CLIPTextModel(config: CLIPTextConfig.load(from: root.appendingPathComponent("text_encoder")), weights: weights,
                                            precision: precision.forModel(.textEncoder))
            let ids = [(0..<77).map { ($0 * 131) % encoder.config.vocabSize }]
            results.append(("text_encoder_b1", try measure { _ = try encoder(inputIds: ids) }))
        }
        if wanted("taesd_decode_512") { results.append(("taesd_decode_512", try taesdDecode512())) }
        if results.count == 3 {
            results.append(("networks", Measurement(min: results.map { $0.1.min }.reduce(0, +), median: results.map { $0.1.median }.reduce(0, +),
                                                    gflop: nil)))
        }
        return results
    }

    /// AutoencoderTiny with TAESD's config (its defaults), the --vae choice for fast decodes, decoding a 512x512 picture.
    private func taesdDecode512() throws -> Measurement {
        let taesd = try AutoencoderTiny(config: AutoencoderTinyConfig(ConfigReader(file: "taesd", values: [:])), weights: RandomTensorSource(),
                                        includeEncoder: false, precision: precision.forModel(.vae))
        let z = RandomTensorSource(seed: 3, scale: 1).makeTensor("z", shape: [1, 64, 64, 4])
        return try measure { _ = try taesd.decode(z) }
    }

    private func measure(runs: Int? = nil, _ body: () throws -> Void) throws -> Measurement {
        try body()  // warm-up: primitive creation and weight re-layout happen here
        var times: [Double] = []
        var flops: Double = 0
        for _ in 0..<(runs ?? self.runs) {
            FlopCounter.start()
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            flops = FlopCounter.stop()
        }
        times.sort()
        return Measurement(min: times[0], median: times[times.count / 2], gflop: flops > 0 ? flops / 1e9 : nil)
    }

    static func random(_ shape: [Int], scale: Float = 1) -> Tensor {
        RandomTensorSource(seed: 7, scale: scale).makeTensor("bench", shape: shape)
    }
}
