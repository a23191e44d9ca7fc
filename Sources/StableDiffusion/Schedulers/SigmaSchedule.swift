import Foundation

/// Sigma-space helpers shared by the Karras-style schedulers (Euler, Euler ancestral, Heun, LMS, DPM, UniPC).
enum Sigmas {
    /// `init_noise_sigma` of the sigma-based schedulers: the largest sigma with linspace/trailing spacing,
    /// else sqrt(max^2 + 1).
    static func initNoiseSigma(_ sigmas: [Float], _ spacing: TimestepSpacing) -> Float {
        let m = sigmas.max() ?? 0
        return spacing == .linspace || spacing == .trailing ? m : (m * m + 1).squareRoot()
    }

    /// `scale_model_input` of the sigma-based schedulers: the sample over sqrt(sigma^2 + 1), in float32.
    static func scaledInput(_ sample: Tensor, sigma: Float) -> Tensor {
        let d = (sigma * sigma + 1).squareRoot()
        return sample.schedMap { $0 / d }
    }

    /// `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5` in float32, ascending in t.
    static func trainSigmas(_ s: NoiseSchedule) -> [Float] {
        s.alphasCumprod.map { a in
            // Zero-terminal-SNR schedules set the last alpha to 2^-24: sqrt(16777215) lies within 1e-15 of a
            // rounding midpoint, and torch's x86 sqrt returns 4096 where a correctly rounded one gives 4095.9998.
            if a == 0x1p-24 { return 4096 }
            return ((1 - a) / a).squareRoot()
        }
    }

    /// Float timesteps of Euler-style `set_timesteps`, descending (float32 values).
    static func floatTimesteps(_ spacing: TimestepSpacing, _ n: Int, train: Int, offset: Int) -> [Double] {
        switch spacing {
        case .linspace:
            return npLinspace(0, Double(train - 1), n).reversed().map { Double(Float($0)) }
        case .leading:
            let ratio = train / n
            return (0..<n).reversed().map { Double(Float($0 * ratio) + Float(offset)) }
        case .trailing:
            return npArangeDown(Double(train), 0, -Double(train) / Double(n)).map { Double(Float(roundEven($0)) - 1) }
        }
    }

    /// Timesteps of the multistep solvers' `set_timesteps` (DPM-Solver++, UniPC), descending: n + 1 points
    /// with the last dropped, over `[0, last)` where `last` is the training length less any lambda clipping.
    static func multistepTimesteps(_ spacing: TimestepSpacing, _ n: Int, last: Int, train: Int, offset: Int) -> [Double] {
        switch spacing {
        case .linspace:
            return Array(npLinspace(0, Double(last - 1), n + 1).map(roundEven).reversed().dropLast())
        case .leading:
            let ratio = last / (n + 1)
            return (1...n).reversed().map { Double($0 * ratio + offset) }
        case .trailing:
            return npArangeDown(Double(last), 0, -Double(train) / Double(n)).map { roundEven($0) - 1 }
        }
    }

    /// `np.interp(x, arange(len(ys)), ys)`.
    static func interp(_ x: Double, _ ys: [Float]) -> Double {
        if x <= 0 { return Double(ys[0]) }
        let last = ys.count - 1
        if x >= Double(last) { return Double(ys[last]) }
        let i = Int(x.rounded(.down))
        let f = x - Double(i)
        let a = Double(ys[i]), b = Double(ys[i + 1])
        // numpy's formula: slope * (x - xp[i]) + fp[i]
        return (b - a) * f + a
    }

    /// `_sigma_to_t`: fractional training timestep of `sigma` by interpolating log-sigmas.
    static func sigmaToT(_ sigma: Double, _ logSigmas: [Float]) -> Double {
        let logSigma = Foundation.log(max(sigma, 1e-10))
        var low = 0
        for (i, ls) in logSigmas.enumerated() where logSigma - Double(ls) >= 0 { low = i }
        low = min(low, logSigmas.count - 2)
        // numpy: the numerator is float64 (float32 - float64), the denominator float32 - float32.
        let lo = logSigmas[low], hi = logSigmas[low + 1]
        var w = (Double(lo) - logSigma) / Double(lo - hi)
        w = min(max(w, 0), 1)
        return (1 - w) * Double(low) + w * Double(low + 1)
    }

    /// `_convert_to_karras` (rho = 7), float64.
    static func karras(min sigmaMin: Double, max sigmaMax: Double, _ n: Int) -> [Double] {
        let rho = 7.0
        let minInv = pow(sigmaMin, 1 / rho), maxInv = pow(sigmaMax, 1 / rho)
        return npLinspace(0, 1, n).map { pow(maxInv + $0 * (minInv - maxInv), rho) }
    }

    /// `_convert_to_exponential`, float64.
    static func exponential(min sigmaMin: Double, max sigmaMax: Double, _ n: Int) -> [Double] {
        npLinspace(Foundation.log(sigmaMax), Foundation.log(sigmaMin), n).map { exp($0) }
    }

    /// First index of `timestep` in `schedule`, or the second when it occurs more than once (diffusers'
    /// `index_for_timestep`, which avoids skipping a sigma when img2img starts mid-schedule).
    static func index(of timestep: Double, in schedule: [Double]) throws -> Int {
        let hits = schedule.indices.filter { schedule[$0] == timestep }
        guard let first = hits.first else { throw SchedulerError.invalidUse("timestep \(timestep) is not one of the scheduler's timesteps") }
        return hits.count > 1 ? hits[1] : first
    }

    /// `original + noise * sigma` per batch item (sigma-space add_noise).
    static func addNoise(_ x: Tensor, _ noise: Tensor, sigmas: [Float]) throws -> Tensor {
        guard x.shape == noise.shape else { throw TensorError.shapeMismatch("add_noise: sample \(x.shape) and noise \(noise.shape) differ") }
        let batch = max(x.shape.first ?? 1, 1)
        let size = x.count / batch
        var out = Tensor(uninitializedShape: x.shape)
        x.withUnsafeBufferPointer { a in
            noise.withUnsafeBufferPointer { n in
                out.withUnsafeMutableBufferPointer { o in
                    for b in 0..<batch {
                        let s = sigmas[sigmas.count == 1 ? 0 : b]
                        for i in b * size..<(b + 1) * size { o[i] = a[i] + n[i] * s }
                    }
                }
            }
        }
        return out
    }
}

/// The step-index bookkeeping of the sigma-based schedulers (`_step_index`, `_begin_index`).
struct StepIndex: Sendable {
    var step: Int?
    var begin: Int?

    mutating func reset() { step = nil; begin = nil }

    mutating func current(for timestep: Double, in timesteps: [Double]) throws -> Int {
        if let step { return step }
        let s = try begin ?? Sigmas.index(of: timestep, in: timesteps)
        step = s
        return s
    }

    /// The sigma indices `add_noise` uses: begin/step index when set, else looked up per timestep.
    func noiseIndices(_ ts: [Double], in timesteps: [Double]) throws -> [Int] {
        if begin == nil { return try ts.map { try Sigmas.index(of: $0, in: timesteps) } }
        return Array(repeating: step ?? begin!, count: ts.count)
    }
}

/// The sigma-spacing options the sigma-based schedulers share (`use_karras_sigmas`,
/// `use_exponential_sigmas`, `sigma_min`, `sigma_max`), read and checked once. diffusers keeps unknown
/// config keys, so sigma_min/sigma_max from another class's config apply too.
struct SigmaOptions: Sendable, Equatable {
    let karras: Bool
    let exponential: Bool
    let sigmaMin: Double?
    let sigmaMax: Double?

    init(_ config: SchedulerConfig) throws {
        // diffusers adds these three flags up to check that at most one is set, so None fails there.
        karras = try config.strictBool("use_karras_sigmas", false)
        exponential = try config.strictBool("use_exponential_sigmas", false)
        try config.requireOff("use_beta_sigmas", strictNull: true)
        if karras && exponential {
            throw SchedulerError.invalidValue(file: config.source, key: "use_karras_sigmas",
                                              detail: "only one of use_karras_sigmas, use_exponential_sigmas can be set")
        }
        sigmaMin = try config.optionalDouble("sigma_min")
        sigmaMax = try config.optionalDouble("sigma_max")
    }
}
