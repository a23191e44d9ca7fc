import CKernels

/// The number format convolutions, linear layers and attention's two products multiply in. Everything
/// else (norms, softmax, element-wise ops, the activations between layers) stays fp32 either way.
///
/// - `fp32`: the default, and the one that reproduces diffusers' pictures.
/// - `bf16`: weights are held once in bf16 (half the memory), each layer's input is rounded to bf16 on
///   the way in, and oneDNN's bf16 kernels accumulate and write fp32. Needs a CPU with AVX512_BF16 or AMX.
public enum ComputePrecision: String, CaseIterable, Sendable, Hashable {
    case fp32, bf16

    /// Why this precision cannot run on a machine with `capability`, or nil when it can.
    public func unsupportedReason(on capability: BF16Capability = .current) -> String? {
        guard self == .bf16 else { return nil }
        guard capability.hasOneDNN else {
            return "--precision bf16 needs the oneDNN backend (Linux); this build has none, use --precision fp32"
        }
        guard capability.hasAVX512BF16 || capability.hasAMXBF16 else {
            return "--precision bf16 needs a CPU with AVX512_BF16 or AMX-BF16; this one has neither, use --precision fp32"
        }
        return nil
    }

    /// Throws unless this precision can run on a machine with `capability` (the current one by default).
    public func checkSupported(on capability: BF16Capability = .current) throws {
        if let reason = unsupportedReason(on: capability) { throw TensorError.invalidArgument(reason) }
    }
}

/// What bf16 compute needs from the machine; tests inject one to check the refusal on a CPU that has it.
public struct BF16Capability: Sendable, Equatable {
    public var hasAVX512BF16: Bool
    public var hasAMXBF16: Bool
    public var hasOneDNN: Bool

    public init(hasAVX512BF16: Bool, hasAMXBF16: Bool, hasOneDNN: Bool) {
        self.hasAVX512BF16 = hasAVX512BF16; self.hasAMXBF16 = hasAMXBF16; self.hasOneDNN = hasOneDNN
    }

    /// This process's CPU (cpuid, through CKernels) and build.
    public static var current: BF16Capability {
        #if canImport(CDNNL)
        let oneDNN = true
        #else
        let oneDNN = false
        #endif
        return BF16Capability(hasAVX512BF16: sdk_has_avx512_bf16() != 0, hasAMXBF16: sdk_has_amx_bf16() != 0, hasOneDNN: oneDNN)
    }
}
