import ArgumentParser
import Foundation
import StableDiffusion

/// `sd bench`: timing of the engine's hot paths on this machine (random weights, no weight files needed).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the kernels and the real UNet architecture (min and median of several runs).")

    @Option(help: "Timed runs per case (after one warm-up run).")
    var runs: Int = 5

    @Option(help: "A UNet config.json (e.g. ../shared/reference-configs/runwayml-stable-diffusion-v1-5/unet/config.json): time one UNet call with random weights.")
    var unetConfig: String?

    @Option(help: "Image height and width for the UNet case (latents are 1/8 of it).")
    var size: Int = 512

    @Option(help: "Batch for the UNet case (2 = the classifier-free-guidance pair).")
    var batch: Int = 2

    func validate() throws {
        guard runs >= 1 else { throw ValidationError("--runs must be >= 1") }
        guard size >= 64, size % 64 == 0 else { throw ValidationError("--size must be a positive multiple of 64") }
        guard batch >= 1 else { throw ValidationError("--batch must be >= 1") }
    }

    func run() throws {
        print("case                                      min s   median s   GFLOP/s(min)  GFLOP/s(median)")
        if let unetConfig {
            let config = try UNet2DConditionConfig.load(URL(fileURLWithPath: unetConfig))
            let start = Date()
            let unet = try UNet2DConditionModel(config: config, weights: RandomTensorSource())
            FileHandle.standardError.write(Data(String(format: "built UNet with random weights in %.1f s\n", Date().timeIntervalSince(start)).utf8))
            let latent = size / 8
            let x = RandomTensorSource(seed: 1, scale: 1).makeTensor("x", shape: [batch, latent, latent, config.inChannels])
            let ctx = RandomTensorSource(seed: 2, scale: 1).makeTensor("ctx", shape: [batch, 77, config.crossAttentionDim[0]])
            try report("UNet \(size)x\(size) batch \(batch)", flops: nil) {
                { _ = try unet(sample: x, timesteps: [500], encoderHiddenStates: ctx) }
            }
            return
        }
        try report("conv2d 3x3 2x64x64x320 -> 320", flops: 2.0 * 2 * 64 * 64 * 320 * 320 * 9) {
            let conv = try Conv2D(weight: Self.random([320, 320, 3, 3], scale: 0.02), bias: Self.random([320]), padding: .uniform(1))
            let x = Self.random([2, 64, 64, 320])
            return { _ = try conv(x) }
        }
        try report("matmul (4096x320) x (320x1280)", flops: 2.0 * 4096 * 320 * 1280) {
            let lin = try Linear(weight: Self.random([1280, 320], scale: 0.05), bias: nil)
            let x = Self.random([4096, 320])
            return { _ = try lin(x) }
        }
    }

    private func report(_ name: String, flops: Double?, _ setup: () throws -> () throws -> Void) throws {
        let body = try setup()
        try body()  // warm-up: primitive creation and weight re-layout happen here
        var times: [Double] = []
        for _ in 0..<runs {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        times.sort()
        let minT = times[0], median = times[times.count / 2]
        let pad = name.padding(toLength: 40, withPad: " ", startingAt: 0)
        if let flops {
            print(String(format: "%@ %7.4f   %7.4f   %10.1f  %12.1f", pad, minT, median, flops / minT / 1e9, flops / median / 1e9))
        } else {
            print(String(format: "%@ %7.4f   %7.4f", pad, minT, median))
        }
    }

    static func random(_ shape: [Int], scale: Float = 1) -> Tensor {
        RandomTensorSource(seed: 7, scale: scale).makeTensor("bench", shape: shape)
    }
}
