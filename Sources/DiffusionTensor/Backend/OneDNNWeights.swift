#if canImport(CDNNL)
import CDNNL

/// A layer's single weight copy for oneDNN, in whatever layout (fp32 or bf16) the primitive that runs
/// next wants. Primitives for other input sizes may want another blocked layout, so every run first
/// moves the weights to its own (a no-op when they are already there): a cached primitive must never
/// read weights left in the last new primitive's layout.
final class OneDNNWeights {
    private(set) var storage: TensorStorage
    private(set) var desc: dnnl_memory_desc_t
    /// How many times a call moved the weights to another layout (0 while the load-time layout fits).
    private(set) var relayouts = 0

    /// - Parameters:
    ///   - storage: the data, laid out as `desc` says (a `PackedWeightCache` file's bytes, borrowed).
    ///   - desc: its oneDNN layout, of fp32 or bf16.
    init(storage: TensorStorage, desc: dnnl_memory_desc_t) {
        self.storage = storage
        self.desc = desc
    }

    /// The weights converted from `source` (fp32, laid out as `plain`) straight into `layout`, the one the
    /// layer's primitives are expected to want: loading then writes each weight
    /// once, instead of a plain copy that the first call re-lays out (a second pass over every weight and
    /// a second set of fresh pages). `source` is only read, and not retained.
    init(converting source: UnsafeRawPointer, plain: dnnl_memory_desc_t, into layout: dnnl_memory_desc_t) throws {
        desc = layout
        storage = try Self.reordered(UnsafeMutableRawPointer(mutating: source), from: plain, to: layout)
    }

    var pointer: UnsafeMutableRawPointer { UnsafeMutableRawPointer(storage.pointer) }

    /// Moves the weights into `wanted`, replacing the old copy (one copy is ever kept).
    func reorder(to wanted: dnnl_memory_desc_t) throws {
        var target = wanted
        if dnnl_memory_desc_equal(&desc, &target) != 0 { return }
        storage = try Self.reordered(pointer, from: desc, to: target)
        desc = target
        relayouts += 1
    }

    /// A new buffer holding `source` (laid out as `from`) in the layout and type of `to`, by a oneDNN reorder.
    private static func reordered(_ source: UnsafeMutableRawPointer, from: dnnl_memory_desc_t,
                                  to: dnnl_memory_desc_t) throws -> TensorStorage {
        var target = to
        let packed = TensorStorage(count: (dnnl_memory_desc_get_size(&target) + 3) / 4)
        try reorder(source, from: from, to: to, into: UnsafeMutableRawPointer(packed.pointer))
        return packed
    }

    /// `source` (laid out as `from`) written into `destination` (caller-allocated) in the layout and type of `to`.
    static func reorder(_ source: UnsafeMutableRawPointer, from: dnnl_memory_desc_t, to: dnnl_memory_desc_t,
                                into destination: UnsafeMutableRawPointer) throws {
        var from = from, target = to
        let src = try OneDNN.memory(&from, source)
        defer { dnnl_memory_destroy(src) }
        let dst = try OneDNN.memory(&target, destination)
        defer { dnnl_memory_destroy(dst) }
        var rpd: dnnl_primitive_desc_t?
        try OneDNN.check(dnnl_reorder_primitive_desc_create(&rpd, &from, OneDNN.shared.engine, &target, OneDNN.shared.engine, nil),
                         "weight reorder descriptor")
        defer { dnnl_primitive_desc_destroy(rpd) }
        var reorder: dnnl_primitive_t?
        try OneDNN.check(dnnl_primitive_create(&reorder, rpd), "weight reorder primitive")
        guard let reorder else { throw TensorError.backend("oneDNN returned no reorder primitive") }
        defer { dnnl_primitive_destroy(reorder) }
        try OneDNN.execute(reorder, [(Int32(DNNL_ARG_FROM), src), (Int32(DNNL_ARG_TO), dst)])
    }

    /// The weights layout a primitive descriptor for `desc` (a convolution or matmul descriptor with `any`
    /// weights) picks, or nil when oneDNN has no implementation for it. Only the descriptor is made (tens
    /// of microseconds); no kernel is generated.
    static func preferredLayout(_ desc: UnsafeRawPointer) -> dnnl_memory_desc_t? {
        var pd: dnnl_primitive_desc_t?
        guard dnnl_primitive_desc_create(&pd, desc, nil, OneDNN.shared.engine, nil) == dnnl_success, let pd else { return nil }
        defer { dnnl_primitive_desc_destroy(pd) }
        return dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0)?.pointee
    }
}
#endif
