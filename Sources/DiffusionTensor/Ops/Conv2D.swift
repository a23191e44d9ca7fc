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
public final class Conv2D: @unchecked Sendable {
    public enum Backend: Sendable { case automatic, portable }

    public let inChannels: Int
    public let outChannels: Int
    public let kernelHeight: Int
    public let kernelWidth: Int
    public let stride: Int
    public let padding: ConvPadding

    private let lock = NSLock()
    private let bias: TensorStorage?
    private let useOneDNN: Bool
    /// Weights in the current layout: OIHW as loaded, then whatever the backend asked for.
    private var weights: TensorStorage
    #if canImport(CDNNL)
    private var weightsDesc: dnnl_memory_desc_t
    private var plans: [PlanKey: Plan] = [:]
    #endif

    /// - Parameters:
    ///   - weight: `[out, in, kh, kw]`, as torch stores conv weights.
    ///   - bias: `[out]` or nil.
    public init(weight: Tensor, bias: Tensor?, stride: Int = 1, padding: ConvPadding = .uniform(0), backend: Backend = .automatic) throws {
        guard weight.rank == 4 else { throw TensorError.shapeMismatch("conv2d weight must be [out, in, kh, kw], got \(weight.shape)") }
        guard stride >= 1 else { throw TensorError.invalidArgument("conv2d stride must be >= 1, got \(stride)") }
        guard min(padding.top, padding.left, padding.bottom, padding.right) >= 0 else {
            throw TensorError.invalidArgument("conv2d padding must be >= 0, got \(padding)")
        }
        outChannels = weight.shape[0]; inChannels = weight.shape[1]
        kernelHeight = weight.shape[2]; kernelWidth = weight.shape[3]
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
        #if canImport(CDNNL)
        useOneDNN = backend == .automatic
        #else
        useOneDNN = false
        #endif
        if useOneDNN {
            // Shared with the loaded tensor until the first call re-lays it out for oneDNN.
            weights = weight.storage
            #if canImport(CDNNL)
            weightsDesc = try OneDNN.memoryDesc(weight.shape, tag: dnnl_oihw)
            #endif
        } else {
            // im2col layout: rows (kh, kw, in), columns out.
            let (o, i, kh, kw) = (outChannels, inChannels, kernelHeight, kernelWidth)
            weights = TensorStorage(count: weight.count)
            let src = weight.unsafePointer
            let dst = weights.pointer
            for oc in 0..<o { for ic in 0..<i { for y in 0..<kh { for x in 0..<kw {
                dst[((y * kw + x) * i + ic) * o + oc] = src[((oc * i + ic) * kh + y) * kw + x]
            } } } }
            #if canImport(CDNNL)
            weightsDesc = dnnl_memory_desc_t()
            #endif
        }
    }

    /// Output spatial size for an input of `height` x `width`.
    public func outputSize(height: Int, width: Int) -> (height: Int, width: Int) {
        ((height + padding.top + padding.bottom - kernelHeight) / stride + 1,
         (width + padding.left + padding.right - kernelWidth) / stride + 1)
    }

    /// `activation(conv(x) + bias + residual)`, NHWC in and out.
    public func callAsFunction(_ input: Tensor, residual: Tensor? = nil, activation: Activation = .identity) throws -> Tensor {
        guard input.rank == 4, input.shape[3] == inChannels else {
            throw TensorError.shapeMismatch("conv2d expects NHWC input with \(inChannels) channels, got \(input.shape)")
        }
        let (n, h, w) = (input.shape[0], input.shape[1], input.shape[2])
        guard h + padding.top + padding.bottom >= kernelHeight, w + padding.left + padding.right >= kernelWidth else {
            throw TensorError.shapeMismatch("conv2d input \(input.shape) is smaller than the \(kernelHeight)x\(kernelWidth) kernel")
        }
        let (oh, ow) = outputSize(height: h, width: w)
        let outShape = [n, oh, ow, outChannels]
        if let residual, residual.shape != outShape {
            throw TensorError.shapeMismatch("conv2d residual must be \(outShape), got \(residual.shape)")
        }
        FlopCounter.add(2 * Double(n * oh * ow) * Double(outChannels * inChannels * kernelHeight * kernelWidth))
        var out = residual ?? Tensor(uninitializedShape: outShape)
        // Make the output buffer uniquely ours before the kernel writes into it.
        out.withUnsafeMutableBufferPointer { _ in }
        #if canImport(CDNNL)
        if useOneDNN {
            try runOneDNN(input, into: &out, residual: residual != nil, activation: activation)
            return out
        }
        #endif
        runPortable(input, into: &out, residual: residual != nil, activation: activation)
        return out
    }

    // MARK: portable im2col + GEMM

    private func runPortable(_ input: Tensor, into out: inout Tensor, residual: Bool, activation: Activation) {
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
    private final class Plan {
        let primitive: dnnl_primitive_t
        let pd: dnnl_primitive_desc_t
        var src: dnnl_memory_desc_t, dst: dnnl_memory_desc_t, wts: dnnl_memory_desc_t, bias: dnnl_memory_desc_t
        init(primitive: dnnl_primitive_t, pd: dnnl_primitive_desc_t, src: dnnl_memory_desc_t, dst: dnnl_memory_desc_t,
             wts: dnnl_memory_desc_t, bias: dnnl_memory_desc_t) {
            self.primitive = primitive; self.pd = pd; self.src = src; self.dst = dst; self.wts = wts; self.bias = bias
        }
        deinit { dnnl_primitive_destroy(primitive); dnnl_primitive_desc_destroy(pd) }
    }

    private func plan(for key: PlanKey) throws -> Plan {
        if let p = plans[key] { return p }
        let (oh, ow) = outputSize(height: key.h, width: key.w)
        var src = try OneDNN.memoryDesc([key.n, inChannels, key.h, key.w], tag: dnnl_nhwc)
        var dst = try OneDNN.memoryDesc([key.n, outChannels, oh, ow], tag: dnnl_nhwc)
        var wAny = try OneDNN.memoryDesc([outChannels, inChannels, kernelHeight, kernelWidth], tag: dnnl_format_tag_any)
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

        var pd: dnnl_primitive_desc_t?
        try OneDNN.check(dnnl_primitive_desc_create(&pd, &desc, attr, OneDNN.shared.engine, nil), "convolution primitive descriptor")
        guard let pd else { throw TensorError.backend("oneDNN returned no convolution descriptor") }
        guard let wanted = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0) else {
            dnnl_primitive_desc_destroy(pd)
            throw TensorError.backend("oneDNN convolution has no weights descriptor")
        }
        var prim: dnnl_primitive_t?
        let created = dnnl_primitive_create(&prim, pd)
        guard created == dnnl_success, let prim else {
            dnnl_primitive_desc_destroy(pd)
            throw TensorError.backend("oneDNN convolution primitive creation failed (status \(created.rawValue))")
        }
        let plan = Plan(primitive: prim, pd: pd, src: src, dst: dst, wts: wanted.pointee, bias: biasMD)
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
        }
    }

    /// Moves the single weight copy into the layout a primitive wants, if it differs.
    private func reorderWeights(to wanted: dnnl_memory_desc_t) throws {
        var target = wanted
        if dnnl_memory_desc_equal(&weightsDesc, &target) != 0 { return }
        let bytes = dnnl_memory_desc_get_size(&target)
        let packed = TensorStorage(count: (bytes + 3) / 4)
        let from = try OneDNN.memory(&weightsDesc, weights.pointer)
        defer { dnnl_memory_destroy(from) }
        let to = try OneDNN.memory(&target, packed.pointer)
        defer { dnnl_memory_destroy(to) }
        var rpd: dnnl_primitive_desc_t?
        try OneDNN.check(dnnl_reorder_primitive_desc_create(&rpd, &weightsDesc, OneDNN.shared.engine, &target, OneDNN.shared.engine, nil), "weight reorder descriptor")
        defer { dnnl_primitive_desc_destroy(rpd) }
        var reorder: dnnl_primitive_t?
        try OneDNN.check(dnnl_primitive_create(&reorder, rpd), "weight reorder primitive")
        guard let reorder else { throw TensorError.backend("oneDNN returned no reorder primitive") }
        defer { dnnl_primitive_destroy(reorder) }
        try OneDNN.execute(reorder, [(Int32(DNNL_ARG_FROM), from), (Int32(DNNL_ARG_TO), to)])
        weights = packed
        weightsDesc = target
    }

    private func runOneDNN(_ input: Tensor, into out: inout Tensor, residual: Bool, activation: Activation) throws {
        lock.lock()
        defer { lock.unlock() }
        let p = try plan(for: PlanKey(n: input.shape[0], h: input.shape[1], w: input.shape[2], residual: residual, activation: activation))
        // The one weight copy follows the plan that runs: plans for other input sizes may want another
        // blocked layout, so a cached plan must not run on weights left in the last new plan's layout
        // (a process that changes image size, like `sd serve`, drew different pictures after it).
        try reorderWeights(to: p.wts)
        let srcMem = try OneDNN.memory(&p.src, UnsafeMutableRawPointer(mutating: input.unsafePointer))
        defer { dnnl_memory_destroy(srcMem) }
        let wMem = try OneDNN.memory(&p.wts, weights.pointer)
        defer { dnnl_memory_destroy(wMem) }
        let dstMem = try out.withUnsafeMutableBufferPointer { try OneDNN.memory(&p.dst, $0.baseAddress) }
        defer { dnnl_memory_destroy(dstMem) }
        var args: [(Int32, dnnl_memory_t)] = [(Int32(DNNL_ARG_SRC), srcMem), (Int32(DNNL_ARG_WEIGHTS), wMem), (Int32(DNNL_ARG_DST), dstMem)]
        var biasMem: dnnl_memory_t?
        if let bias {
            let m = try OneDNN.memory(&p.bias, bias.pointer)
            biasMem = m
            args.append((Int32(DNNL_ARG_BIAS), m))
        }
        defer { if let biasMem { dnnl_memory_destroy(biasMem) } }
        try OneDNN.execute(p.primitive, args)
    }
    #endif
}
