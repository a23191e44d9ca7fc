import Foundation
#if canImport(CDNNL)
import CDNNL
#endif

/// Zero padding of a 2-D convolution, per side (the VAE encoder's downsampling pads right/bottom only).
public struct ConvPadding: Hashable, Sendable {
    public var top: Int, left: Int, bottom: Int, right: Int
    public init(top: Int, left: Int, bottom: Int, right: Int) {
        self.top = top; self.left = left; self.bottom = bottom; self.right = right
    }
    public static func uniform(_ p: Int) -> ConvPadding { ConvPadding(top: p, left: p, bottom: p, right: p) }
}

/// A 2-D convolution layer over NHWC tensors, with weights re-laid-out once for the backend.
///
/// On Linux this is a oneDNN convolution: the primitive is created once per input shape and cached,
/// the weights are reordered into the layout oneDNN prefers (only one copy is kept), and bias,
/// residual addition and activation are fused as post-ops. Elsewhere it is im2col + GEMM.
/// In `bf16` precision the weights are kept in bf16 only, each input is rounded to bf16 per call, and
/// oneDNN's bf16 kernel accumulates in fp32 and writes the fp32 output (bias and post-ops in fp32).
public final class Conv2D: @unchecked Sendable {
    public enum Backend: Sendable { case automatic, portable }

    /// How a bf16 3x3 convolution with stride 1 and padding 1 computes (every other one is direct):
    /// `automatic` takes Winograd F(2x2, 3x3) where `prefersWinograd` says it is faster.
    public enum Algorithm: Sendable { case automatic, direct, winograd }

    public let inChannels: Int
    public let outChannels: Int
    public let kernelHeight: Int
    public let kernelWidth: Int
    public let stride: Int
    public let padding: ConvPadding
    public let precision: ComputePrecision

    private let lock = NSLock()
    private let bias: TensorStorage?
    /// The portable path's weights (im2col layout); nil with oneDNN.
    private let im2colWeights: TensorStorage?
    #if canImport(CDNNL)
    /// oneDNN's weights for the direct convolution, in the layout the primitive that ran last asked for (nil when
    /// the layer runs as Winograd). Set once, in `init` (a `var` only so that `init` can ask oneDNN for the layout
    /// through the layer's own descriptor).
    private var packed: OneDNNWeights?
    private var plans: [PlanKey: OneDNNPlan] = [:]
    /// The Winograd form (transformed weights and their GEMMs) when the layer runs as Winograd; set in `init`.
    private var winograd: OneDNNWinograd?
    #endif

    /// How this layer computes: `direct` or `winograd` (`automatic` is resolved at `init`).
    public let algorithm: Algorithm

    /// Whether a layer can run as Winograd F(2x2, 3x3): bf16, 3x3, stride 1, padding 1, on oneDNN.
    public static func winogradApplies(shape: [Int], stride: Int, padding: ConvPadding, precision: ComputePrecision,
                                       backend: Backend = .automatic) -> Bool {
        #if canImport(CDNNL)
        return precision == .bf16 && backend == .automatic && shape.count == 4 && shape[2] == 3 && shape[3] == 3 && stride == 1
            && padding == .uniform(1)
        #else
        return false
        #endif
    }

    /// Whether `automatic` runs a layer that Winograd applies to as Winograd: wherever its channels are enough for
    /// the GEMMs, not the transforms, to dominate, and oneDNN's direct convolution does not run on AMX tiles. Not
    /// the image size: a layer computes the same way for every size, so a process that changes sizes (`sd serve`)
    /// draws the same picture for the same request. (`sd bench --suite ops --precision bf16`, batch 2, direct vs
    /// Winograd: AMD EPYC Zen 4, 64x64x320 0.033 vs 0.020 s, 32x32x640 0.034 vs 0.018, 16x16x1280 0.032 vs 0.019,
    /// 8x8x1280 0.008 vs 0.006; Intel Xeon with AMX (family 6 model 207), 64x64x320 0.007 vs 0.012, 32x32x640
    /// 0.006 vs 0.007, 16x16x1280 0.008 vs 0.009, 8x8x1280 0.003 vs 0.004: the tiles leave the transforms as the
    /// larger cost.)
    public static func prefersWinograd(inChannels: Int, outChannels: Int) -> Bool {
        #if canImport(CDNNL)
        return min(inChannels, outChannels) >= 64 && !OneDNN.dispatchesAMX
        #else
        return false
        #endif
    }

    /// The algorithm a layer of this configuration runs when `requested`.
    static func resolve(_ requested: Algorithm, shape: [Int], stride: Int, padding: ConvPadding, precision: ComputePrecision,
                        backend: Backend = .automatic) -> Algorithm {
        guard winogradApplies(shape: shape, stride: stride, padding: padding, precision: precision, backend: backend) else { return .direct }
        switch requested {
        case .automatic: return prefersWinograd(inChannels: shape[1], outChannels: shape[0]) ? .winograd : .direct
        case .direct, .winograd: return requested
        }
    }

    /// - Parameters:
    ///   - weight: `[out, in, kh, kw]`, as torch stores conv weights.
    ///   - bias: `[out]` or nil.
    ///   - precision: `bf16` needs the oneDNN backend and a CPU with AVX512_BF16 or AMX (see `ComputePrecision`).
    ///   - algorithm: `winograd` where it does not apply runs direct.
    public convenience init(weight: Tensor, bias: Tensor?, stride: Int = 1, padding: ConvPadding = .uniform(0),
                            backend: Backend = .automatic, precision: ComputePrecision = .fp32, algorithm: Algorithm = .automatic) throws {
        try self.init(shape: weight.shape, weight: weight, bias: bias, stride: stride, padding: padding, backend: backend,
                      precision: precision, algorithm: algorithm)
    }

    #if canImport(CDNNL)
    /// A oneDNN convolution over weights already in a oneDNN layout of the precision's type (from
    /// `PackedWeightCache`): of `packedShape`, the Winograd form's when `automatic` runs Winograd; `shape` is the
    /// weight's `[out, in, kh, kw]`.
    convenience init(packed: OneDNNWeights, shape: [Int], bias: Tensor?, stride: Int, padding: ConvPadding,
                     precision: ComputePrecision) throws {
        try self.init(shape: shape, weight: nil, bias: bias, stride: stride, padding: padding, backend: .automatic,
                      precision: precision, algorithm: .automatic, packed: packed)
    }

    /// The weights as the layer holds them (for `PackedWeightCache`); nil off oneDNN.
    var packedWeights: OneDNNWeights? { packed ?? winograd?.packedWeights }

    /// The shape of `packedWeights` for a layer of this configuration built with `automatic`.
    static func packedShape(_ shape: [Int], stride: Int, padding: ConvPadding, precision: ComputePrecision) -> [Int] {
        resolve(.automatic, shape: shape, stride: stride, padding: padding, precision: precision) == .winograd
            ? OneDNNWinograd.packedShape(outChannels: shape[0], inChannels: shape[1]) : shape
    }
    #endif

    /// From `weight`, or (oneDNN) from `packed` weights of `shape`.
    private init(shape: [Int], weight: Tensor?, bias: Tensor?, stride: Int, padding: ConvPadding, backend: Backend,
                 precision: ComputePrecision, algorithm requested: Algorithm, packed given: AnyObject? = nil) throws {
        guard shape.count == 4 else { throw TensorError.shapeMismatch("conv2d weight must be [out, in, kh, kw], got \(shape)") }
        guard stride >= 1 else { throw TensorError.invalidArgument("conv2d stride must be >= 1, got \(stride)") }
        guard min(padding.top, padding.left, padding.bottom, padding.right) >= 0 else {
            throw TensorError.invalidArgument("conv2d padding must be >= 0, got \(padding)")
        }
        outChannels = shape[0]; inChannels = shape[1]
        kernelHeight = shape[2]; kernelWidth = shape[3]
        self.stride = stride
        self.padding = padding
        if let bias {
            guard bias.shape == [outChannels] else {
                throw TensorError.shapeMismatch("conv2d bias must be [\(outChannels)], got \(bias.shape)")
            }
            self.bias = bias.storage  // shared, not copied: the tensor is immutable once loaded
        } else {
            self.bias = nil
        }
        self.precision = precision
        try precision.checkSupported()
        algorithm = Self.resolve(requested, shape: shape, stride: stride, padding: padding, precision: precision, backend: backend)
        #if canImport(CDNNL)
        if let given = given as? OneDNNWeights {
            im2colWeights = nil
            if algorithm == .winograd {
                winograd = OneDNNWinograd(packed: given, outChannels: outChannels, inChannels: inChannels)
            } else {
                packed = given
            }
            return
        }
        #endif
        guard let weight else { throw TensorError.invalidArgument("conv2d: no weights") }
        #if canImport(CDNNL)
        if algorithm == .winograd {
            im2colWeights = nil
            winograd = try OneDNNWinograd(weight: weight.unsafePointer, outChannels: outChannels, inChannels: inChannels)
            return
        }
        if backend == .automatic {
            im2colWeights = nil
            // The one copy kept, already in the layout a typical call's primitive wants, in the precision's
            // type: the tensor (possibly a file's mapping, lent for this call) is not retained.
            let type = precision == .bf16 ? dnnl_bf16 : dnnl_f32
            let layout = try expectedWeightsLayout(type: type) ?? OneDNN.memoryDesc(weight.shape, tag: dnnl_oihw, type: type)
            packed = try OneDNNWeights(converting: weight.unsafePointer, plain: OneDNN.memoryDesc(weight.shape, tag: dnnl_oihw),
                                       into: layout)
            return
        }
        packed = nil
        #endif
        guard precision == .fp32 else {
            throw TensorError.invalidArgument("conv2d: precision bf16 needs the oneDNN backend, not the portable one")
        }
        im2colWeights = Self.im2colLayout(weight)
    }

    /// OIHW to the im2col layout: rows (kh, kw, in), columns out.
    private static func im2colLayout(_ weight: Tensor) -> TensorStorage {
        let (o, i, kh, kw) = (weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3])
        let weights = TensorStorage(count: weight.count)
        let src = weight.unsafePointer
        let dst = weights.pointer
        for oc in 0..<o { for ic in 0..<i { for y in 0..<kh { for x in 0..<kw {
            dst[((y * kw + x) * i + ic) * o + oc] = src[((oc * i + ic) * kh + y) * kw + x]
        } } } }
        return weights
    }

    /// How many calls had to move the weights to another layout since loading: 0 while the layout chosen at
    /// load fits every input size seen (for diagnostics and tests; always 0 off oneDNN).
    public var weightRelayouts: Int {
        lock.lock(); defer { lock.unlock() }
        #if canImport(CDNNL)
        return packed?.relayouts ?? 0
        #else
        return 0
        #endif
    }

    /// Output spatial size for an input of `height` x `width`.
    public func outputSize(height: Int, width: Int) -> (height: Int, width: Int) {
        ((height + padding.top + padding.bottom - kernelHeight) / stride + 1,
         (width + padding.left + padding.right - kernelWidth) / stride + 1)
    }

    /// `activation(conv(x) + bias + residual)`, NHWC in and out. The sum is written into the residual's
    /// buffer when the caller hands over the only reference to it (`residual: consume r`), else into a copy.
    public func callAsFunction(_ input: Tensor, residual: consuming Tensor? = nil, activation: Activation = .identity) throws -> Tensor {
        // bf16: Winograd transforms the fp32 input itself; else the input rounded once per call, then the bf16-input path.
        if precision == .bf16 {
            #if canImport(CDNNL)
            if algorithm == .winograd {
                let hasResidual = residual != nil
                var out = try output(for: input.shape, residual: consume residual)
                try runWinograd(inputShape: input.shape, source: UnsafeRawPointer(input.unsafePointer), sourceIsBF16: false,
                                into: &out, residual: hasResidual, activation: activation)
                return out
            }
            #endif
            return try self(BF16Tensor(rounding: input), residual: consume residual, activation: activation)
        }
        let hasResidual = residual != nil
        var out = try output(for: input.shape, residual: consume residual)
        #if canImport(CDNNL)
        if im2colWeights == nil {
            try runOneDNN(inputShape: input.shape, source: UnsafeMutableRawPointer(mutating: input.unsafePointer),
                          into: &out, residual: hasResidual, activation: activation)
            return out
        }
        #endif
        runPortable(input, weights: im2colWeights!, into: &out, residual: hasResidual, activation: activation)
        return out
    }

    /// The same on an input already in bf16 (from `groupNormBF16`): a bf16 convolution then reads those
    /// values as they are, instead of rounding an fp32 copy of them.
    public func callAsFunction(_ input: BF16Tensor, residual: consuming Tensor? = nil, activation: Activation = .identity) throws -> Tensor {
        guard precision == .bf16 else {
            throw TensorError.invalidArgument("conv2d: a bf16 input needs a convolution in bf16 precision, this one is fp32")
        }
        let hasResidual = residual != nil
        var out = try output(for: input.shape, residual: consume residual)
        #if canImport(CDNNL)
        if algorithm == .winograd {
            try withExtendedLifetime(input.buffer) {
                try runWinograd(inputShape: input.shape, source: UnsafeRawPointer(input.buffer.pointer), sourceIsBF16: true,
                                into: &out, residual: hasResidual, activation: activation)
            }
            return out
        }
        if im2colWeights == nil {
            try withExtendedLifetime(input.buffer) {
                try runOneDNN(inputShape: input.shape, source: UnsafeMutableRawPointer(input.buffer.pointer),
                              into: &out, residual: hasResidual, activation: activation)
            }
            return out
        }
        #endif
        throw TensorError.invalidArgument("conv2d: precision bf16 needs the oneDNN backend")
    }

    /// Checks an input shape and the residual, and returns the output buffer, uniquely ours: the residual
    /// (the kernels add into it) or a fresh one.
    private func output(for shape: [Int], residual: consuming Tensor?) throws -> Tensor {
        guard shape.count == 4, shape[3] == inChannels else {
            throw TensorError.shapeMismatch("conv2d expects NHWC input with \(inChannels) channels, got \(shape)")
        }
        let (n, h, w) = (shape[0], shape[1], shape[2])
        guard h + padding.top + padding.bottom >= kernelHeight, w + padding.left + padding.right >= kernelWidth else {
            throw TensorError.shapeMismatch("conv2d input \(shape) is smaller than the \(kernelHeight)x\(kernelWidth) kernel")
        }
        let (oh, ow) = outputSize(height: h, width: w)
        let outShape = [n, oh, ow, outChannels]
        if let residual, residual.shape != outShape {
            throw TensorError.shapeMismatch("conv2d residual must be \(outShape), got \(residual.shape)")
        }
        FlopCounter.add(2 * Double(n * oh * ow) * Double(outChannels * inChannels * kernelHeight * kernelWidth))
        var out = (consume residual) ?? Tensor(uninitializedShape: outShape)
        // Make the buffer uniquely ours before the kernel writes into it.
        out.withUnsafeMutableBufferPointer { _ in }
        return out
    }

    // MARK: portable im2col + GEMM

    private func runPortable(_ input: Tensor, weights: TensorStorage, into out: inout Tensor, residual: Bool, activation: Activation) {
        let (n, h, w, c) = (input.shape[0], input.shape[1], input.shape[2], inChannels)
        let (oh, ow) = outputSize(height: h, width: w)
        let kdim = kernelHeight * kernelWidth * c
        let cols = TensorStorage(count: oh * ow * kdim)
        let x = input.unsafePointer
        let o = outChannels
        out.withUnsafeMutableBufferPointer { ob in
            let y = ob.baseAddress!
            for b in 0..<n {
                let xb = x + b * h * w * c
                let colp = cols.pointer
                Parallel.forRanges(oh, minChunk: 1) { rows in
                    for oy in rows { for ox in 0..<ow {
                        let row = colp + (oy * ow + ox) * kdim
                        for ky in 0..<kernelHeight {
                            let iy = oy * stride + ky - padding.top
                            for kx in 0..<kernelWidth {
                                let ix = ox * stride + kx - padding.left
                                let dst = row + (ky * kernelWidth + kx) * c
                                if iy < 0 || iy >= h || ix < 0 || ix >= w {
                                    dst.initialize(repeating: 0, count: c)
                                } else {
                                    dst.update(from: xb + (iy * w + ix) * c, count: c)
                                }
                            }
                        }
                    } }
                }
                let yb = y + b * oh * ow * o
                Gemm.sgemm(transposeA: false, transposeB: false, m: oh * ow, n: o, k: kdim,
                           a: colp, lda: kdim, b: weights.pointer, ldb: o,
                           beta: residual ? 1 : 0, c: yb, ldc: o)
            }
            let total = n * oh * ow
            let bp = bias?.pointer
            Parallel.forRanges(total, minChunk: 256) { r in
                for p in r {
                    let row = y + p * o
                    for j in 0..<o { row[j] = activation.apply(row[j] + (bp?[j] ?? 0)) }
                }
            }
        }
    }

    // MARK: oneDNN

    #if canImport(CDNNL)
    private struct PlanKey: Hashable { let n: Int, h: Int, w: Int, residual: Bool, activation: Activation }

    /// The weights layout oneDNN picks for a 64x64 input, one image: the size most calls of a latent-space
    /// layer see at 512x512 and the one whose choice most other sizes share (the first call re-lays the
    /// weights out where a size wants another). Nil when no implementation takes the shape.
    private func expectedWeightsLayout(type: dnnl_data_type_t) -> dnnl_memory_desc_t? {
        let probe = PlanKey(n: 1, h: 64, w: 64, residual: false, activation: .identity)
        guard var (desc, _, _, _) = try? descriptor(for: probe, type: type) else { return nil }
        return withUnsafePointer(to: &desc) { OneDNNWeights.preferredLayout($0) }
    }

    /// The convolution descriptor for an input shape, with `any` weights, and its memory descriptors.
    private func descriptor(for key: PlanKey, type: dnnl_data_type_t) throws
        -> (dnnl_convolution_desc_t, src: dnnl_memory_desc_t, dst: dnnl_memory_desc_t, bias: dnnl_memory_desc_t) {
        let (oh, ow) = outputSize(height: key.h, width: key.w)
        var src = try OneDNN.memoryDesc([key.n, inChannels, key.h, key.w], tag: dnnl_nhwc, type: type)
        var dst = try OneDNN.memoryDesc([key.n, outChannels, oh, ow], tag: dnnl_nhwc)
        var wAny = try OneDNN.memoryDesc([outChannels, inChannels, kernelHeight, kernelWidth], tag: dnnl_format_tag_any, type: type)
        var biasMD = try OneDNN.memoryDesc([outChannels], tag: dnnl_a)
        var strides = OneDNN.dims([stride, stride])
        var padL = OneDNN.dims([padding.top, padding.left])
        var padR = OneDNN.dims([padding.bottom, padding.right])
        var desc = dnnl_convolution_desc_t()
        let hasBias = bias != nil
        let st = withUnsafePointer(to: &strides) { s in withUnsafePointer(to: &padL) { l in withUnsafePointer(to: &padR) { r in
            withUnsafePointer(to: &biasMD) { b in
            s.withMemoryRebound(to: Int64.self, capacity: 12) { s in
            l.withMemoryRebound(to: Int64.self, capacity: 12) { l in
            r.withMemoryRebound(to: Int64.self, capacity: 12) { r in
                dnnl_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct,
                                                   &src, &wAny, hasBias ? b : nil, &dst, s, l, r)
            } } } }
        } } }
        try OneDNN.check(st, "convolution descriptor")
        return (desc, src, dst, biasMD)
    }

    private func plan(for key: PlanKey) throws -> OneDNNPlan {
        if let p = plans[key] { return p }
        var (desc, src, dst, biasMD) = try descriptor(for: key, type: precision == .bf16 ? dnnl_bf16 : dnnl_f32)
        var attr: dnnl_primitive_attr_t?
        try OneDNN.check(dnnl_primitive_attr_create(&attr), "attribute creation")
        defer { dnnl_primitive_attr_destroy(attr) }
        var postOps: dnnl_post_ops_t?
        try OneDNN.check(dnnl_post_ops_create(&postOps), "post-ops creation")
        defer { dnnl_post_ops_destroy(postOps) }
        if key.residual { try OneDNN.check(dnnl_post_ops_append_sum(postOps, 1.0), "sum post-op") }
        if let (alg, alpha) = Self.eltwise(key.activation) {
            try OneDNN.check(dnnl_post_ops_append_eltwise(postOps, 1.0, alg, alpha, 0), "eltwise post-op")
        }
        try OneDNN.check(dnnl_primitive_attr_set_post_ops(attr, postOps), "setting post-ops")

        let plan = try withUnsafePointer(to: &desc) {
            try OneDNN.plan($0, attr: attr, what: "convolution", src: src, dst: dst, bias: biasMD)
        }
        plans[key] = plan
        return plan
    }

    private static func eltwise(_ a: Activation) -> (dnnl_alg_kind_t, Float)? {
        switch a {
        case .identity: return nil
        case .silu: return (dnnl_eltwise_swish, 1)
        case .quickGelu: return (dnnl_eltwise_swish, 1.702)
        case .gelu: return (dnnl_eltwise_gelu_erf, 0)
        case .geluTanh: return (dnnl_eltwise_gelu_tanh, 0)
        case .relu: return (dnnl_eltwise_relu, 0)
        }
    }

    private func runWinograd(inputShape shape: [Int], source: UnsafeRawPointer, sourceIsBF16: Bool, into out: inout Tensor,
                             residual: Bool, activation: Activation) throws {
        lock.lock()
        defer { lock.unlock() }
        guard let winograd else { throw TensorError.backend("conv2d: no Winograd weights") }
        try out.withUnsafeMutableBufferPointer { ob in
            try winograd.run(source: source, sourceIsBF16: sourceIsBF16, n: shape[0], h: shape[1], w: shape[2],
                             bias: bias.map { UnsafePointer($0.pointer) }, accumulate: residual, into: ob.baseAddress!)
            if activation != .identity { activation.apply(inPlace: ob.baseAddress!, count: ob.count) }
        }
    }

    private func runOneDNN(inputShape shape: [Int], source: UnsafeMutableRawPointer, into out: inout Tensor,
                           residual: Bool, activation: Activation) throws {
        lock.lock()
        defer { lock.unlock() }
        guard let weights = packed else { throw TensorError.backend("conv2d: no direct-convolution weights") }
        let p = try plan(for: PlanKey(n: shape[0], h: shape[1], w: shape[2], residual: residual, activation: activation))
        // The one weight copy follows the plan that runs (a process that changes image size, like
        // `sd serve`, drew different pictures when a cached plan ran on another plan's layout).
        try weights.reorder(to: p.wts)
        try out.withUnsafeMutableBufferPointer {
            try p.execute(source: source, weights: weights.pointer, destination: UnsafeMutableRawPointer($0.baseAddress),
                          bias: bias.map { UnsafeMutableRawPointer($0.pointer) })
        }
    }
    #endif
}
