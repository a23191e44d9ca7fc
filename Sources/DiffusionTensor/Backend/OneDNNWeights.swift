#if canImport(CDNNL)
import CDNNL

/// A layer's single weight copy for oneDNN, in whatever layout (fp32 or bf16) the primitive that runs
/// next wants. Primitives for other input sizes may want another blocked layout, so every run first
/// moves the weights to its own (a no-op when they are already there): a cached primitive must never
/// read weights left in the last new primitive's layout.
final class OneDNNWeights {
    private(set) var storage: TensorStorage
    private(set) var desc: dnnl_memory_desc_t

    /// - Parameters:
    ///   - storage: the data, laid out as `desc` says (shared with a loaded tensor until the first reorder).
    ///   - desc: a plain layout (OIHW, or `ba` for a linear layer's `[out, in]`) of fp32 or bf16.
    init(storage: TensorStorage, desc: dnnl_memory_desc_t) {
        self.storage = storage
        self.desc = desc
    }

    var pointer: UnsafeMutableRawPointer { UnsafeMutableRawPointer(storage.pointer) }

    /// Moves the weights into `wanted`, replacing the old copy (one copy is ever kept).
    func reorder(to wanted: dnnl_memory_desc_t) throws {
        var target = wanted
        if dnnl_memory_desc_equal(&desc, &target) != 0 { return }
        let bytes = dnnl_memory_desc_get_size(&target)
        let packed = TensorStorage(count: (bytes + 3) / 4)
        let from = try OneDNN.memory(&desc, pointer)
        defer { dnnl_memory_destroy(from) }
        let to = try OneDNN.memory(&target, packed.pointer)
        defer { dnnl_memory_destroy(to) }
        var rpd: dnnl_primitive_desc_t?
        try OneDNN.check(dnnl_reorder_primitive_desc_create(&rpd, &desc, OneDNN.shared.engine, &target, OneDNN.shared.engine, nil),
                         "weight reorder descriptor")
        defer { dnnl_primitive_desc_destroy(rpd) }
        var reorder: dnnl_primitive_t?
        try OneDNN.check(dnnl_primitive_create(&reorder, rpd), "weight reorder primitive")
        guard let reorder else { throw TensorError.backend("oneDNN returned no reorder primitive") }
        defer { dnnl_primitive_destroy(reorder) }
        try OneDNN.execute(reorder, [(Int32(DNNL_ARG_FROM), from), (Int32(DNNL_ARG_TO), to)])
        storage = packed
        desc = target
    }
}
#endif
