import Foundation

/// The training noise schedule shared by the discrete schedulers: betas, alphas and their cumulative
/// product, in float32 as diffusers keeps them (torch tensors of dtype float32).
public struct NoiseSchedule: Sendable, Equatable {
    public let betas: [Float]
    public let alphasCumprod: [Float]
    public var numTrainTimesteps: Int { betas.count }
    /// Largest `num_train_timesteps` accepted (100x what released models use).
    public static let maxTrainTimesteps = 100_000

    /// Reads `num_train_timesteps`, `beta_start`, `beta_end`, `beta_schedule`, `trained_betas` and,
    /// where the scheduler has it, `rescale_betas_zero_snr`. `extraSchedules` admits the schedules only
    /// some classes accept (DDPM: `sigmoid`, `laplace`; Heun: `exp`); `betaRange` is the class's defaults.
    init(config: SchedulerConfig, supportsZeroSNR: Bool, zeroSNRLastAlpha: Bool = false,
         extraSchedules: [String] = [], betaRange: (start: Double, end: Double) = (0.0001, 0.02)) throws {
        let n = try config.int("num_train_timesteps", 1000)
        guard n >= 2 else { throw SchedulerError.invalidValue(file: config.source, key: "num_train_timesteps", detail: "must be at least 2, got \(n)") }
        // Every released model says 1000; the schedules are arrays of this length, so a config cannot ask for gigabytes.
        guard n <= Self.maxTrainTimesteps else {
            throw SchedulerError.invalidValue(file: config.source, key: "num_train_timesteps", detail: "at most \(Self.maxTrainTimesteps) are supported, got \(n)")
        }
        let start = try config.double("beta_start", betaRange.start)
        let end = try config.double("beta_end", betaRange.end)
        var betas: [Float]
        if let trained = try config.doubles("trained_betas") {
            guard !trained.isEmpty else { throw SchedulerError.invalidValue(file: config.source, key: "trained_betas", detail: "is empty") }
            betas = trained.map { Float($0) }
        } else {
            let allowed = ["linear", "scaled_linear", "squaredcos_cap_v2"] + extraSchedules
            switch try config.choice("beta_schedule", "linear", allowed) {
            case "linear": betas = Self.linspace(Float(start), Float(end), n)
            case "scaled_linear": betas = Self.linspace(Float(start.squareRoot()), Float(end.squareRoot()), n).map { $0 * $0 }
            case "sigmoid":
                let range = Float(end - start), lo = Float(start)
                betas = Self.linspace(-6, 6, n).map { 1 / (1 + Foundation.exp(-$0)) * range + lo }
            case "laplace": betas = Self.alphaBarBetas(n, Self.laplaceAlphaBar)
            case "exp": betas = Self.alphaBarBetas(n) { exp($0 * -12.0) }
            default: betas = Self.cosineBetas(n)
            }
        }
        var zeroSNR = false
        if supportsZeroSNR { zeroSNR = try config.bool("rescale_betas_zero_snr", false) }
        if zeroSNR { betas = Self.rescaleZeroTerminalSNR(betas) }
        self.betas = betas
        var cumprod = Self.cumprod(betas.map { 1 - $0 })
        // Euler-type schedulers replace the exact zero of the last alpha so that sigma stays finite.
        if zeroSNR && zeroSNRLastAlpha { cumprod[cumprod.count - 1] = 0x1p-24 }
        alphasCumprod = cumprod
    }

    /// torch.linspace for float32 (the second half counts back from the end, as torch does).
    static func linspace(_ start: Float, _ end: Float, _ n: Int) -> [Float] {
        if n == 1 { return [start] }
        let step = (end - start) / Float(n - 1)
        let half = n / 2
        return (0..<n).map { i in i < half ? start + step * Float(i) : end - step * Float(n - 1 - i) }
    }

    /// torch.cumprod on float32: accumulates in double, stores each partial product as float.
    static func cumprod(_ x: [Float]) -> [Float] {
        var acc = 1.0
        return x.map { acc *= Double($0); return Float(acc) }
    }

    /// `betas_for_alpha_bar` with the cosine ("squaredcos_cap_v2") transform, max_beta 0.999.
    static func cosineBetas(_ n: Int) -> [Float] {
        alphaBarBetas(n) { t in
            let c = cos((t + 0.008) / 1.008 * Double.pi / 2)
            return c * c
        }
    }

    /// The "laplace" transform of `betas_for_alpha_bar`.
    static func laplaceAlphaBar(_ t: Double) -> Double {
        let lmb = -0.5 * (0.5 - t < 0 ? -1.0 : 1.0) * Foundation.log(1 - 2 * Swift.abs(0.5 - t) + 1e-6)
        let snr = exp(lmb)
        return (snr / (1 + snr)).squareRoot()
    }

    /// `betas_for_alpha_bar`: betas from a cumulative-alpha function, in float64, capped at 0.999.
    static func alphaBarBetas(_ n: Int, _ alphaBar: (Double) -> Double) -> [Float] {
        (0..<n).map { i in
            let t1 = Double(i) / Double(n), t2 = Double(i + 1) / Double(n)
            return Float(min(1 - alphaBar(t2) / alphaBar(t1), 0.999))
        }
    }

    /// `rescale_zero_terminal_snr` (float32 tensor arithmetic).
    static func rescaleZeroTerminalSNR(_ betas: [Float]) -> [Float] {
        let cum = cumprod(betas.map { 1 - $0 })
        var sq = cum.map { $0.squareRoot() }
        let s0 = sq[0], sT = sq[sq.count - 1]
        let scale = s0 / (s0 - sT)
        sq = sq.map { ($0 - sT) * scale }
        let bar = sq.map { $0 * $0 }
        var alphas = [bar[0]]
        for i in 1..<bar.count { alphas.append(bar[i] / bar[i - 1]) }
        return alphas.map { 1 - $0 }
    }
}

/// The timestep spacings of diffusers' `set_timesteps`, as integers (descending).
enum TimestepSpacing: String {
    case linspace, leading, trailing

    static func read(_ config: SchedulerConfig, default fallback: String) throws -> TimestepSpacing {
        TimestepSpacing(rawValue: try config.choice("timestep_spacing", fallback, ["linspace", "leading", "trailing"]))!
    }
}

/// numpy's round-half-to-even, as `np.round` / `.round()`.
@inline(__always) func roundEven(_ x: Double) -> Double { x.rounded(.toNearestOrEven) }

/// `np.linspace(start, stop, n)` in float64.
func npLinspace(_ start: Double, _ stop: Double, _ n: Int) -> [Double] {
    if n == 1 { return [start] }
    let step = (stop - start) / Double(n - 1)
    var out = (0..<n).map { start + Double($0) * step }
    out[n - 1] = stop
    return out
}

/// `np.arange(start, stop, step)` for a negative float step (trailing spacing).
func npArangeDown(_ start: Double, _ stop: Double, _ step: Double) -> [Double] {
    let count = Int(((stop - start) / step).rounded(.up))
    return (0..<max(count, 0)).map { start + Double($0) * step }
}

/// Checks a step count the way diffusers' pipelines would fail on it.
func checkSteps(_ n: Int, _ trainSteps: Int) throws {
    guard n >= 1 else { throw SchedulerError.invalidUse("num_inference_steps must be at least 1, got \(n)") }
    guard n <= trainSteps else {
        throw SchedulerError.invalidUse("num_inference_steps \(n) cannot be larger than num_train_timesteps \(trainSteps)")
    }
}
