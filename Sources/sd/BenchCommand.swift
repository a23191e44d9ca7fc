import ArgumentParser
import Foundation
import StableDiffusion

/// `sd bench`: timing of the engine's hot paths on this machine (random weights, no files needed).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the compute kernels (GFLOP/s, min and median of several runs).")

    @Option(help: "Timed runs per case (after one warm-up run).")
    var runs: Int = 5

    func validate() throws {
        guard runs >= 1 else { throw ValidationError("--runs must be >= 1") }
    }

    func run() throws {
        print("case                                      min s   median s   GFLOP/s(min)  GFLOP/s(median)")
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

    private func report(_ name: String, flops: Double, _ setup: () throws -> () throws -> Void) throws {
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
        print(String(format: "%@ %7.4f   %7.4f   %10.1f  %12.1f", pad, minT, median, flops / minT / 1e9, flops / median / 1e9))
    }

    static func random(_ shape: [Int], scale: Float = 1) -> Tensor {
        var t = Tensor(uninitializedShape: shape)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        t.withUnsafeMutableBufferPointer { p in
            for i in 0..<p.count {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                p[i] = (Float(state >> 40) / Float(1 << 24) - 0.5) * 2 * scale
            }
        }
        return t
    }
}
