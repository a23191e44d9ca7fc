#if canImport(CDNNL)
import CDNNL
import CKernels

/// Process-wide oneDNN engine and stream. oneDNN primitives are thread-safe to execute; the stream
/// is used in-order from whichever thread runs a model.
final class OneDNN: @unchecked Sendable {
    static let shared = OneDNN()

    /// Whether oneDNN's bf16 primitives run on AMX tiles here: the CPU has them and nothing (`ONEDNN_MAX_CPU_ISA`)
    /// caps the library below them. (oneDNN asks the OS for the tile state itself.)
    static let dispatchesAMX: Bool = sdk_has_amx_bf16() != 0 && dnnl_get_effective_cpu_isa() == dnnl_cpu_isa_avx512_core_amx

    let engine: dnnl_engine_t
    let stream: dnnl_stream_t

    private init() {
        var e: dnnl_engine_t?
        var s: dnnl_stream_t?
        // Without a CPU engine nothing can run; this only fails if the library itself is broken.
        precondition(dnnl_engine_create(&e, dnnl_cpu, 0) == dnnl_success && e != nil, "oneDNN: cannot create CPU engine")
        precondition(dnnl_stream_create(&s, e, dnnl_stream_default_flags.rawValue) == dnnl_success && s != nil, "oneDNN: cannot create stream")
        engine = e!
        stream = s!
    }

    static func check(_ status: dnnl_status_t, _ what: @autoclosure () -> String) throws {
        guard status == dnnl_success else {
            throw TensorError.backend("oneDNN \(what()) failed (status \(status.rawValue))")
        }
    }

    static func dims(_ values: [Int]) -> dnnl_dims_t {
        var d: dnnl_dims_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &d) { raw in
            let p = raw.bindMemory(to: Int64.self)
            for (i, v) in values.enumerated() { p[i] = Int64(v) }
        }
        return d
    }

    static func memoryDesc(_ dimensions: [Int], tag: dnnl_format_tag_t, type: dnnl_data_type_t = dnnl_f32) throws -> dnnl_memory_desc_t {
        var md = dnnl_memory_desc_t()
        var d = dims(dimensions)
        try check(withUnsafePointer(to: &d) { p in
            p.withMemoryRebound(to: Int64.self, capacity: 12) {
                dnnl_memory_desc_init_by_tag(&md, Int32(dimensions.count), $0, type, tag)
            }
        }, "memory descriptor \(dimensions)")
        return md
    }

    /// A memory object over caller-owned data (no copy).
    static func memory(_ md: inout dnnl_memory_desc_t, _ data: UnsafeMutableRawPointer?) throws -> dnnl_memory_t {
        var m: dnnl_memory_t?
        try check(dnnl_memory_create(&m, &md, shared.engine, data), "memory creation")
        guard let mem = m else { throw TensorError.backend("oneDNN returned no memory object") }
        return mem
    }

    /// The plan for an operation descriptor (`desc`: a convolution or matmul descriptor) over these memory
    /// descriptors, with the weights layout the primitive prefers (the caller re-lays its weights out to it
    /// once). `what` names it in errors.
    static func plan(_ desc: UnsafeRawPointer, attr: dnnl_primitive_attr_t?, what: String,
                     src: dnnl_memory_desc_t, dst: dnnl_memory_desc_t, bias: dnnl_memory_desc_t) throws -> OneDNNPlan {
        var pd: dnnl_primitive_desc_t?
        try check(dnnl_primitive_desc_create(&pd, desc, attr, shared.engine, nil),
                  "\(what) primitive descriptor")
        guard let pd else { throw TensorError.backend("oneDNN returned no \(what) descriptor") }
        guard let wanted = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0) else {
            dnnl_primitive_desc_destroy(pd)
            throw TensorError.backend("oneDNN \(what) has no weights descriptor")
        }
        var prim: dnnl_primitive_t?
        let created = dnnl_primitive_create(&prim, pd)
        guard created == dnnl_success, let prim else {
            dnnl_primitive_desc_destroy(pd)
            throw TensorError.backend("oneDNN \(what) primitive creation failed (status \(created.rawValue))")
        }
        return OneDNNPlan(primitive: prim, pd: pd, src: src, wts: wanted.pointee, dst: dst, bias: bias)
    }

    /// Executes a primitive and waits for it.
    static func execute(_ primitive: dnnl_primitive_t, _ args: [(Int32, dnnl_memory_t)]) throws {
        let execArgs = args.map { dnnl_exec_arg_t(arg: $0.0, memory: $0.1) }
        try check(execArgs.withUnsafeBufferPointer {
            dnnl_primitive_execute(primitive, shared.stream, Int32($0.count), $0.baseAddress)
        }, "primitive execution")
        try check(dnnl_stream_wait(shared.stream), "stream wait")
    }
}

/// A created primitive with the memory descriptors it runs on, cached per shape by the layer that made it
/// (the descriptors are `var` because oneDNN's memory creation takes them by pointer).
final class OneDNNPlan {
    let primitive: dnnl_primitive_t
    let pd: dnnl_primitive_desc_t
    var src: dnnl_memory_desc_t, wts: dnnl_memory_desc_t, dst: dnnl_memory_desc_t, bias: dnnl_memory_desc_t

    init(primitive: dnnl_primitive_t, pd: dnnl_primitive_desc_t, src: dnnl_memory_desc_t, wts: dnnl_memory_desc_t,
         dst: dnnl_memory_desc_t, bias: dnnl_memory_desc_t) {
        self.primitive = primitive; self.pd = pd; self.src = src; self.wts = wts; self.dst = dst; self.bias = bias
    }

    deinit { dnnl_primitive_destroy(primitive); dnnl_primitive_desc_destroy(pd) }

    /// Runs the primitive once over caller-owned buffers: memory objects wrap them for this call only
    /// (no copies) and are destroyed on every path, errors included. `weights` must already be in `wts`'s
    /// layout; `bias` is fp32 or nil when the plan has none.
    func execute(source: UnsafeMutableRawPointer, weights: UnsafeMutableRawPointer,
                 destination: UnsafeMutableRawPointer?, bias: UnsafeMutableRawPointer?) throws {
        let srcMem = try OneDNN.memory(&src, source)
        defer { dnnl_memory_destroy(srcMem) }
        let wMem = try OneDNN.memory(&wts, weights)
        defer { dnnl_memory_destroy(wMem) }
        let dstMem = try OneDNN.memory(&dst, destination)
        defer { dnnl_memory_destroy(dstMem) }
        var args: [(Int32, dnnl_memory_t)] = [(Int32(DNNL_ARG_SRC), srcMem), (Int32(DNNL_ARG_WEIGHTS), wMem), (Int32(DNNL_ARG_DST), dstMem)]
        var biasMem: dnnl_memory_t?
        defer { if let biasMem { dnnl_memory_destroy(biasMem) } }
        if let bias {
            let m = try OneDNN.memory(&self.bias, bias)
            biasMem = m
            args.append((Int32(DNNL_ARG_BIAS), m))
        }
        try OneDNN.execute(primitive, args)
    }
}
#endif
