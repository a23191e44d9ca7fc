#ifndef SD_CKERNELS_ATTENTION_H
#define SD_CKERNELS_ATTENTION_H

#include <stdint.h>

/// Fused scaled dot-product attention ("flash" style): softmax(scale * Q K^T) V without the score matrix.
/// Q, K, V and the output are `[batch, tokens, heads * head_dim]`, fp32, rows `heads * head_dim` apart
/// (a head is a strided column block). One task is one (batch, head, query tile of SDK_ATTENTION_QUERY_TILE
/// rows), which sweeps all keys in tiles, keeping a running maximum and sum per query (online softmax).
typedef struct {
    const float *q, *k, *v;
    float *out;
    int64_t batch, query_tokens, key_tokens, heads, head_dim;
    float scale;
    /// Nonzero: query i sees keys 0...i only (keys are aligned to the first query).
    int causal;
} sdk_attention_args;

/// Queries per task.
#define SDK_ATTENTION_QUERY_TILE 48

/// Tasks covering the whole attention: batch * heads * ceil(query_tokens / SDK_ATTENTION_QUERY_TILE).
int64_t sdk_attention_tasks(const sdk_attention_args *a);

/// Floats of scratch one fp32 task needs (its own; tasks run in parallel on disjoint scratch).
int64_t sdk_attention_scratch_floats(const sdk_attention_args *a);

/// Runs task `task` in fp32 with AVX-512 and FMA; returns 0, or -1 (doing nothing) where sdk_has_avx512() is 0.
/// Elsewhere callers keep their GEMM-based attention, which BLAS makes faster than plain C loops.
int sdk_attention_f32(const sdk_attention_args *a, int64_t task, float *scratch);

/// bf16 variant: Q K^T and P V as bf16 dot products (`vdpbf16ps`) accumulating in fp32; softmax in fp32.
/// K and V are rounded to bf16 once per (batch, head) by sdk_attention_bf16_pack into `packed`
/// (sdk_attention_bf16_packed_bytes in all, one slice per head), then each task rounds its queries and
/// its softmax weights. Only for CPUs where sdk_has_avx512_bf16() is 1.
int64_t sdk_attention_bf16_packed_bytes(const sdk_attention_args *a);
/// Returns 0, or -1 (doing nothing) where sdk_has_avx512_bf16() is 0.
int sdk_attention_bf16_pack(const sdk_attention_args *a, int64_t batch_head, void *packed);
int64_t sdk_attention_bf16_scratch_floats(const sdk_attention_args *a);
/// Returns 0, or -1 (doing nothing) where sdk_has_avx512_bf16() is 0.
int sdk_attention_bf16(const sdk_attention_args *a, int64_t task, const void *packed, float *scratch);


/// AMX variant (Intel AMX-BF16 tiles): the same rounding as sdk_attention_bf16 (Q scaled then rounded, K, V and the
/// softmax weights rounded to bf16, products in fp32), tasks of 128 queries, keys by blocks of 128 with an online softmax.
/// 1 where the CPU has AMX-BF16 and the OS grants this process the tile state, else 0.
int sdk_attention_amx_available(void);
int64_t sdk_attention_amx_tasks(const sdk_attention_args *a);
/// K and V as tiles, per (batch, head); sdk_attention_amx_pack fills one head's slice.
int64_t sdk_attention_amx_packed_bytes(const sdk_attention_args *a);
int sdk_attention_amx_pack(const sdk_attention_args *a, int64_t batch_head, void *packed);
/// Bytes of scratch one thread needs (any alignment).
int64_t sdk_attention_amx_scratch_bytes(const sdk_attention_args *a);
/// Runs tasks first..<first+count on this thread, then releases its tiles. Returns 0, or -1 (doing nothing)
/// where sdk_attention_amx_available() is 0.
int sdk_attention_amx(const sdk_attention_args *a, int64_t first, int64_t count, const void *packed, void *scratch);

#endif
