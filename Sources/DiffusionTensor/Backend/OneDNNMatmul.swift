#if canImport(CDNNL)
import Foundation
import CDNNL

/// `Y (+)= X W^T + b` as a oneDNN bf16 matmul primitive (bf16 x bf16, fp32 accumulation and output),
/// one primitive per row count, cached, like the convolutions. The weights live here once, in bf16.
final class OneDNNMatmulBF16: @unchecked Sendable {
    let inFeatures: Int, outFeatures: Int
    private let weights: OneDNNWeights
    private let bias: TensorStorage?
    private let lock = NSLock()
    private var plans: [PlanKey: OneDNNPlan] = [:]

    /// - Parameters:
    ///   - weight: `[out, in]` fp32, row-major (torch's layout); converted to bf16 and not retained.
    ///   - bias: `[out]` fp32, or nil.
    init(weight: UnsafePointer<Float>, outFeatures: Int, inFeatures: Int, bias: TensorStorage?) throws {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.bias = bias
        // [out, in] row-major is the K x N weight matrix in oneDNN's `ba` layout. Converted once, straight
        // into the blocked layout the matmul wants (the same for every row count).
        let plain = try OneDNN.memoryDesc([inFeatures, outFeatures], tag: dnnl_ba)
        let layout = try Self.expectedWeightsLayout(inFeatures: inFeatures, outFeatures: outFeatures)
            ?? OneDNN.memoryDesc([inFeatures, outFeatures], tag: dnnl_ba, type: dnnl_bf16)
        weights = try OneDNNWeights(converting: weight, plain: plain, into: layout)
    }

    /// Over weights already in a bf16 layout of the `[in, out]` matrix (from `PackedWeightCache`).
    init(packed: OneDNNWeights, outFeatures: Int, inFeatures: Int, bias: TensorStorage?) throws {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.bias = bias
        weights = packed
    }

    var packedWeights: OneDNNWeights { weights }

    /// The weights layout of the matmul for 4,096 rows (oneDNN picks the same for any row count), or nil.
    private static func expectedWeightsLayout(inFeatures: Int, outFeatures: Int) throws -> dnnl_memory_desc_t? {
        guard var (desc, _, _, _) = try? descriptor(rows: 4096, inFeatures: inFeatures, outFeatures: outFeatures, hasBias: false)
        else { return nil }
        return withUnsafePointer(to: &desc) { OneDNNWeights.preferredLayout($0) }
    }

    /// The matmul descriptor for `rows` rows, with `any` weights, and its memory descriptors.
    private static func descriptor(rows: Int, inFeatures: Int, outFeatures: Int, hasBias: Bool) throws
        -> (dnnl_matmul_desc_t, src: dnnl_memory_desc_t, dst: dnnl_memory_desc_t, bias: dnnl_memory_desc_t) {
        var src = try OneDNN.memoryDesc([rows, inFeatures], tag: dnnl_ab, type: dnnl_bf16)
        var wAny = try OneDNN.memoryDesc([inFeatures, outFeatures], tag: dnnl_format_tag_any, type: dnnl_bf16)
        var dst = try OneDNN.memoryDesc([rows, outFeatures], tag: dnnl_ab)
        var biasMD = try OneDNN.memoryDesc([1, outFeatures], tag: dnnl_ab)
        var desc = dnnl_matmul_desc_t()
        try OneDNN.check(withUnsafePointer(to: &biasMD) { b in
            dnnl_matmul_desc_init(&desc, &src, &wAny, hasBias ? b : nil, &dst)
        }, "matmul descriptor")
        return (desc, src, dst, biasMD)
    }

    var weightRelayouts: Int {
        lock.lock(); defer { lock.unlock() }
        return weights.relayouts
    }

    private struct PlanKey: Hashable { let rows: Int, accumulate: Bool }

    private func plan(for key: PlanKey) throws -> OneDNNPlan {
        if let p = plans[key] { return p }
        var (desc, src, dst, biasMD) = try Self.descriptor(rows: key.rows, inFeatures: inFeatures, outFeatures: outFeatures,
                                                           hasBias: bias != nil)

        var attr: dnnl_primitive_attr_t?
        try OneDNN.check(dnnl_primitive_attr_create(&attr), "attribute creation")
        defer { dnnl_primitive_attr_destroy(attr) }
        if key.accumulate {
            var postOps: dnnl_post_ops_t?
            try OneDNN.check(dnnl_post_ops_create(&postOps), "post-ops creation")
            defer { dnnl_post_ops_destroy(postOps) }
            try OneDNN.check(dnnl_post_ops_append_sum(postOps, 1.0), "sum post-op")
            try OneDNN.check(dnnl_primitive_attr_set_post_ops(attr, postOps), "setting post-ops")
        }
        let plan = try withUnsafePointer(to: &desc) {
            try OneDNN.plan($0, attr: attr, what: "bf16 matmul", src: src, dst: dst, bias: biasMD)
        }
        plans[key] = plan
        return plan
    }

    /// `y = x W^T + b`, or `y += x W^T + b` when `accumulate`; `x` is `[rows, in]`, `y` `[rows, out]`.
    func run(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, accumulate: Bool) throws {
        guard rows > 0 else { return }
        let rounded = BF16Buffer(converting: x, count: rows * inFeatures)
        try withExtendedLifetime(rounded) {
            try run(bf16Input: rounded.pointer, rows: rows, into: y, accumulate: accumulate)
        }
    }

    /// The same on an input already in bf16, `[rows, in]`.
    func run(bf16Input x: UnsafeMutablePointer<UInt16>, rows: Int, into y: UnsafeMutablePointer<Float>, accumulate: Bool) throws {
        guard rows > 0 else { return }
        lock.lock()
        defer { lock.unlock() }
        let p = try plan(for: PlanKey(rows: rows, accumulate: accumulate))
        try weights.reorder(to: p.wts)
        try p.execute(source: UnsafeMutableRawPointer(x), weights: weights.pointer,
                      destination: UnsafeMutableRawPointer(y), bias: bias.map { UnsafeMutableRawPointer($0.pointer) })
    }
}
#endif
