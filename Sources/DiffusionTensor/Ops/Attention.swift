import CKernels

/// Scaled dot-product attention over `[batch, tokens, heads * headDim]` tensors (the layout the
/// projections produce, so no transposes are needed: a head is a strided column block).
///
/// Two implementations, neither of which materialises a `tokens x tokens` matrix:
/// - fused (CKernels `sdk_attention_f32`, AVX-512): per (batch, head, 48-query tile) the keys are swept in
///   tiles of 128 with an online softmax (running maximum and sum, accumulator rescaled), all in L1/L2;
/// - blocked GEMMs (any CPU): per (batch, head, query block) a `rows x keyTokens` score block (2 MiB at
///   most) by sgemm, its exponentials, a second sgemm, then the rows divided by their sums.
/// The fused kernel runs where the CPU has AVX-512 except for few keys with wide heads, where the GEMMs
/// measured faster (see `prefersFused`). `precision: .bf16` runs a bf16 kernel (`BF16Kernel`): Q, K, V and the softmax
/// weights rounded to bf16, both products accumulated in fp32 (AMX tiles, else `vdpbf16ps`), the softmax in fp32;
/// within a few 1e-3 of fp32. Needs AVX512-BF16; elsewhere it throws.
public enum Attention {

    /// Bytes of scores one task of the GEMM path works on. Larger blocks give the two GEMMs more rows, which
    /// pays more than staying within L2 (SD 1.5's first-level self-attention at 512x512, batch 2, AMD EPYC,
    /// `sd bench --suite ops`: 0.276 s with 512 KiB, 0.238 s with 2 MiB, 0.234 s with 4 MiB).
    static let scoreBlockBytes = 2 << 20

    /// Whether the bf16 precision can run here.
    public static var bfloat16Available: Bool { sdk_has_avx512_bf16() != 0 }

    /// `queryBlock`: query rows per task of the GEMM path (the fused kernel's tile is fixed).
    public static func scaledDotProduct(
        query q: Tensor, key k: Tensor, value v: Tensor, heads: Int,
        scale: Float? = nil, causal: Bool = false, queryBlock: Int? = nil, precision: ComputePrecision = .fp32
    ) throws -> Tensor {
        guard q.rank == 3, k.rank == 3, v.rank == 3 else {
            throw TensorError.shapeMismatch("attention expects [batch, tokens, channels], got \(q.shape), \(k.shape), \(v.shape)")
        }
        let (b, lq, dim) = (q.shape[0], q.shape[1], q.shape[2])
        let lk = k.shape[1]
        guard k.shape[0] == b, v.shape[0] == b, v.shape[1] == lk, k.shape[2] == dim, v.shape[2] == dim else {
            throw TensorError.shapeMismatch("attention operands disagree: q \(q.shape), k \(k.shape), v \(v.shape)")
        }
        guard heads > 0, dim % heads == 0 else {
            throw TensorError.invalidArgument("attention: \(dim) channels cannot be split into \(heads) heads")
        }
        if let queryBlock, queryBlock <= 0 { throw TensorError.invalidArgument("attention query block must be positive") }
        if precision == .bf16, !bfloat16Available {
            throw TensorError.backend("bf16 attention needs a CPU with AVX512-BF16 and AVX512-BW; this one lacks them (use fp32)")
        }
        let d = dim / heads
        FlopCounter.add(4 * Double(b * heads) * Double(lq) * Double(lk) * Double(d))
        var out = Tensor(uninitializedShape: [b, lq, dim])
        out.withUnsafeMutableBufferPointer { ob in
            var args = sdk_attention_args(
                q: q.unsafePointer, k: k.unsafePointer, v: v.unsafePointer, out: ob.baseAddress!,
                batch: Int64(b), query_tokens: Int64(lq), key_tokens: Int64(lk), heads: Int64(heads), head_dim: Int64(d),
                scale: scale ?? 1 / Float(d).squareRoot(), causal: causal ? 1 : 0)
            if precision == .bf16 {
                fusedBFloat16(&args)
            } else if KernelDispatch.native, prefersFused(keyTokens: lk, headDim: d) {
                fused(&args)
            } else {
                blocked(args, queryBlock: queryBlock)
            }
        }
        return out
    }

    /// The fused fp32 kernel against the GEMMs, thread CPU time of one thread (the shared 2-core machine made
    /// wall times too noisy to tell the 77-key cases apart), 4096 queries x 8 heads, AMD EPYC Zen 5:
    /// 4096 keys 0.105 vs 0.137 s (head dim 40), 0.157 vs 0.187 (64), 0.190 vs 0.232 (80), 0.387 vs 0.412
    /// (160); 77 keys 2.3 vs 3.0 ms (40), 3.8 vs 4.7 (64), but 5.5 vs 4.9 (80) and 10.8 vs 9.9 (160).
    static func prefersFused(keyTokens: Int, headDim: Int) -> Bool {
        keyTokens > 128 || headDim < 80
    }

    private static func fused(_ args: inout sdk_attention_args) {
        let scratch = Int(sdk_attention_scratch_floats(&args))
        withUnsafePointer(to: &args) { a in
            // Runs of tasks share one scratch allocation: a 48-query tile against 77 keys takes microseconds,
            // which a fresh allocation (and its page faults) per tile measurably slowed.
            Parallel.forRanges(Int(sdk_attention_tasks(a))) { tasks in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: scratch) { s in
                    for task in tasks { _ = sdk_attention_f32(a, Int64(task), s.baseAddress!) }
                }
            }
        }
    }

    /// The bf16 kernels: `amx` (Intel AMX tiles, 128-query tasks, keys by blocks of 128) where `amxAvailable`, else
    /// `avx512` (`vdpbf16ps`, 48-query tasks). The same rounding (Q, K, V and the weights to bf16, products in fp32).
    public enum BF16Kernel: Sendable, CaseIterable { case amx, avx512 }

    /// Whether the AMX kernel can run here (the CPU has AMX-BF16 and the OS lets this process use the tiles).
    public static var amxAvailable: Bool { sdk_attention_amx_available() != 0 }

    /// Tests pin a bf16 kernel to check one against the other; nil (the default) takes AMX where available.
    nonisolated(unsafe) public static var bf16KernelOverride: BF16Kernel?

    private static func fusedBFloat16(_ args: inout sdk_attention_args) {
        if bf16KernelOverride != .avx512, amxAvailable {
            fusedAMX(&args)
            return
        }
        let scratch = Int(sdk_attention_bf16_scratch_floats(&args))
        let packed = UnsafeMutableRawPointer.allocate(byteCount: max(1, Int(sdk_attention_bf16_packed_bytes(&args))), alignment: 64)
        defer { packed.deallocate() }
        withUnsafePointer(to: &args) { a in
            // K and V rounded to bf16 once per (batch, head), not once per query tile.
            Parallel.forEach(Int(a.pointee.batch * a.pointee.heads)) { _ = sdk_attention_bf16_pack(a, Int64($0), packed) }
            Parallel.forRanges(Int(sdk_attention_tasks(a))) { tasks in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: scratch) { s in
                    for task in tasks { _ = sdk_attention_bf16(a, Int64(task), packed, s.baseAddress!) }
                }
            }
        }
    }

    private static func fusedAMX(_ args: inout sdk_attention_args) {
        let scratch = Int(sdk_attention_amx_scratch_bytes(&args))
        let packed = UnsafeMutableRawPointer.allocate(byteCount: max(1, Int(sdk_attention_amx_packed_bytes(&args))), alignment: 64)
        defer { packed.deallocate() }
        withUnsafePointer(to: &args) { a in
            Parallel.forEach(Int(a.pointee.batch * a.pointee.heads)) { _ = sdk_attention_amx_pack(a, Int64($0), packed) }
            Parallel.forRanges(Int(sdk_attention_amx_tasks(a))) { tasks in
                let s = UnsafeMutableRawPointer.allocate(byteCount: scratch, alignment: 64)
                defer { s.deallocate() }
                _ = sdk_attention_amx(a, Int64(tasks.lowerBound), Int64(tasks.count), packed, s)
            }
        }
    }

    private static func blocked(_ a: sdk_attention_args, queryBlock: Int?) {
        let (b, lq, lk, heads, d) = (Int(a.batch), Int(a.query_tokens), Int(a.key_tokens), Int(a.heads), Int(a.head_dim))
        let dim = heads * d, alpha = a.scale, causal = a.causal != 0
        let fitting = max(8, scoreBlockBytes / (4 * max(lk, 1)))
        let block = max(1, min(queryBlock ?? fitting, max(lq, 1)))
        let blocksPerHead = (lq + block - 1) / block
        let qp = a.q!, kp = a.k!, vp = a.v!, o = a.out!
        Parallel.forEach(b * heads * blocksPerHead) { task in
            let bi = task / (heads * blocksPerHead)
            let h = (task / blocksPerHead) % heads
            let start = (task % blocksPerHead) * block
            let rows = min(block, lq - start)
            let qh = qp + bi * lq * dim + h * d
            let kh = kp + bi * lk * dim + h * d
            let vh = vp + bi * lk * dim + h * d
            let oh = o + bi * lq * dim + h * d
            withUnsafeTemporaryAllocation(of: Float.self, capacity: rows * lk + rows) { scratch in
                let s = scratch.baseAddress!, sums = s + rows * lk
                // Called inside a parallel region, oneDNN's GEMM runs on this thread alone.
                Gemm.sgemm(transposeA: false, transposeB: true, m: rows, n: lk, k: d, alpha: alpha,
                           a: qh + start * dim, lda: dim, b: kh, ldb: dim, c: s, ldc: lk)
                for i in 0..<rows {
                    let row = s + i * lk
                    if causal, start + i + 1 < lk { for j in (start + i + 1)..<lk { row[j] = -.infinity } }
                    sums[i] = expRowMinusMax(row, lk)
                }
                let o = oh + start * dim
                Gemm.sgemm(transposeA: false, transposeB: false, m: rows, n: d, k: lk,
                           a: s, lda: lk, b: vh, ldb: dim, c: o, ldc: dim)
                // Softmax's division, on the rows x headDim output instead of the rows x keys weights.
                for i in 0..<rows {
                    let inv: Float = sums[i] > 0 ? 1 / sums[i] : 0
                    let orow = o + i * dim
                    for j in 0..<d { orow[j] *= inv }
                }
            }
        }
    }
}
