import Foundation
import XCTest
import StableDiffusion

/// `GenerationOptions.interruption`: a run stopped early returns the model's denoised estimate at that step
/// (AUTOMATIC1111's interrupted picture), checked against each scheduler's own step rule.
final class InterruptionTests: XCTestCase {
    /// Runs txt2img, interrupting during step `stop`; returns the result and the latents before and after that step.
    func interrupted(scheduler: String, steps: Int, stop: Int) throws -> (GenerationResult, before: Tensor, after: Tensor) {
        let pipe = try TextToImageTests.sd1.get()
        var o = GenerationOptions(prompt: "a red cube")
        o.numInferenceSteps = steps
        o.height = 32
        o.width = 32
        o.seed = 5
        o.scheduler = scheduler
        let interruption = PipelineInterruption()
        o.interruption = interruption
        var seen: [Tensor] = []
        let result = try pipe(o) { p in
            if let l = p.latents { seen.append(l) }
            if p.step == stop { interruption.interrupt() }
            return true
        }
        XCTAssertEqual(result.stoppedAfterStep, stop)
        XCTAssertEqual(seen.count, stop, "no step runs after the interruption")
        XCTAssertEqual(result.images.shape, [1, 32, 32, 3])
        return (result, seen[stop - 2], seen[stop - 1])
    }

    /// Euler: `x_next = x + (sigma_next - sigma) (x - x0) / sigma`, so the x0 the step used is recovered from
    /// the latents around it and the scheduler's own sigmas.
    func testEulerStopReturnsTheStepsDenoisedEstimate() throws {
        let (result, before, after) = try interrupted(scheduler: "euler", steps: 6, stop: 3)
        var euler = try EulerDiscreteScheduler(config: SchedulerConfig(contentsOf: TinyModels.sd1.appendingPathComponent("scheduler/scheduler_config.json")))
        try euler.setTimesteps(6)
        let (sigma, next) = (euler.sigmas[2], euler.sigmas[3])
        let x0 = before.map2(after) { x, n in x - sigma * (n - x) / (next - sigma) }
        assertClose(result.latents, x0, tolerance: 2e-3, "euler x0")
    }

    /// DDIM (eta 0): `x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps` with
    /// `eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)`; abar from the config's scaled-linear betas.
    func testDDIMStopReturnsTheStepsDenoisedEstimate() throws {
        let (result, before, after) = try interrupted(scheduler: "ddim", steps: 4, stop: 2)
        var alphaBar = [Double](), acc = 1.0
        for i in 0..<1000 {
            let b = (0.00085.squareRoot() + Double(i) / 999 * (0.012.squareRoot() - 0.00085.squareRoot()))
            acc *= 1 - b * b
            alphaBar.append(acc)
        }
        // Leading spacing, steps_offset 1, 4 steps: 751, 501, 251, 1. Step 2 goes from 501 to 251.
        let (at, ap) = (alphaBar[501], alphaBar[251])
        let x0 = result.latents
        let predicted = before.map2(x0) { x, z in
            let eps = (Double(x) - at.squareRoot() * Double(z)) / (1 - at).squareRoot()
            return Float(ap.squareRoot() * Double(z) + (1 - ap).squareRoot() * eps)
        }
        assertClose(predicted, after, tolerance: 2e-3, "ddim x_prev from x0")
    }

    /// Without an interruption nothing changes; an interruption during the last step changes nothing either
    /// (the picture is finished); cancelling through the handler still throws and makes nothing.
    func testUninterruptedAndCancelledRunsAreUnchanged() throws {
        let pipe = try TextToImageTests.sd1.get()
        var o = GenerationOptions(prompt: "a red cube")
        o.numInferenceSteps = 3
        o.height = 32
        o.width = 32
        o.seed = 5
        let plain = try pipe(o)
        XCTAssertNil(plain.stoppedAfterStep)
        let interruption = PipelineInterruption()
        o.interruption = interruption
        let late = try pipe(o) { p in
            if p.step == p.totalSteps { interruption.interrupt() }
            return true
        }
        XCTAssertNil(late.stoppedAfterStep)
        XCTAssertTrue(late.images.withUnsafeBufferPointer(Array.init) == plain.images.withUnsafeBufferPointer(Array.init))
        XCTAssertThrowsError(try pipe(o) { _ in false }) { XCTAssertEqual($0 as? PipelineError, .cancelled) }
    }

    /// img2img stops the same way (its loop starts part-way through the schedule).
    func testImageToImageStopsWithAPicture() throws {
        let pipe = try StableDiffusionImg2ImgPipeline(modelDirectory: TinyModels.sd1)
        var o = GenerationOptions(prompt: "a house")
        o.numInferenceSteps = 10
        o.seed = 2
        let interruption = PipelineInterruption()
        o.interruption = interruption
        let image = try Image(width: 32, height: 32, channels: 3, pixels: [UInt8]((0..<(32 * 32 * 3)).map { UInt8($0 % 251) }))
        var steps = 0
        let result = try pipe(o, image: image, strength: 0.8) { p in
            steps = p.step
            if p.step == 2 { interruption.interrupt() }
            return true
        }
        XCTAssertEqual(steps, 2)
        XCTAssertEqual(result.stoppedAfterStep, 2)
        XCTAssertEqual(try result.rgbImages().count, 1)
    }
}

private extension Tensor {
    func map2(_ other: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
        var out = self
        other.withUnsafeBufferPointer { b in
            out.withUnsafeMutableBufferPointer { a in
                for i in 0..<a.count { a[i] = f(a[i], b[i]) }
            }
        }
        return out
    }
}
