/* bf16 fused attention: the fp32 kernel's tiling (attention_tiles.h) with both products as vdpbf16ps,
   which multiplies pairs of bf16 and adds both products into an fp32 lane. The pairs run along each
   product's reduction: head-dim pairs for Q K^T (Q^T packed [d/2][QT][2], K rows as they are), key pairs
   for P V (P^T packed [keys/2][QT][2], V^T rows [d][keys]). The softmax stays fp32, in base 2: Q is scaled by
   log2(e) with the softmax scale, so each weight is 2^(s - max), whose short polynomial (below) costs about half
   of e^x's range reduction and degree-6 polynomial. That was a third of the kernel's instructions. */
#include "attention_tiles.h"

static inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* One head's packed slice: K as [keys][d rounded up to even] bf16, then V^T as [d][keys rounded up to
   even] bf16, each starting on a cache line. */
typedef struct { int64_t k_row, v_row, k_bytes, bytes; } packed_layout;

static packed_layout layout(const sdk_attention_args *a) {
    packed_layout p;
    p.k_row = round_up(a->head_dim, 2);
    p.v_row = round_up(a->key_tokens, 2);
    p.k_bytes = round_up(a->key_tokens * p.k_row * 2, 64);
    p.bytes = p.k_bytes + round_up(a->head_dim * p.v_row * 2, 64);
    return p;
}

int64_t sdk_attention_bf16_packed_bytes(const sdk_attention_args *a) {
    return a->batch * a->heads * layout(a).bytes;
}

int64_t sdk_attention_bf16_scratch_floats(const sdk_attention_args *a) {
    /* Q^T pairs, S^T, P^T pairs, O^T (which first holds the fp32 Q^T). */
    return round_up(a->head_dim, 2) / 2 * QT + (int64_t)KEY_TILE * QT + KEY_TILE / 2 * QT + a->head_dim * QT;
}

#ifdef SDK_X86
/* Rows 2j and 2j+1 (0 past `rows`) of a [rows][QT] fp32 block into row j of a [rows/2][QT] pair block. */
BF16 ALWAYS_INLINE void pair_rows(const float *src, int64_t rows, uint32_t *dst) {
    for (int64_t j = 0; 2 * j < rows; j++)
        for (int v = 0; v < QV; v++) {
            const __m512 a = _mm512_loadu_ps(src + 2 * j * QT + 16 * v);
            const __m512 b = 2 * j + 1 < rows ? _mm512_loadu_ps(src + (2 * j + 1) * QT + 16 * v) : _mm512_setzero_ps();
            _mm512_storeu_si512(dst + j * QT + 16 * v, pair_bf16(a, b));
        }
}

/* S^T rows key0..key0+nk: acc[r] += sum over head-dim pairs of K[key0 + r][pair] . Q^T[pair]. */
BF16 ALWAYS_INLINE void scores_bf16(const uint32_t *qt, const uint32_t *k, int64_t k_row, int64_t pairs, float *s,
                                    const int nk, __m512 *tmax, int causal, int64_t query0, int64_t key0) {
    __m512 acc[RB][QV];
    for (int r = 0; r < nk; r++)
        for (int v = 0; v < QV; v++) acc[r][v] = _mm512_setzero_ps();
    for (int64_t c = 0; c < pairs; c++) {
        __m512bh q[QV];
        for (int v = 0; v < QV; v++) q[v] = (__m512bh)_mm512_loadu_si512(qt + c * QT + 16 * v);
        for (int r = 0; r < nk; r++) {
            const __m512bh kb = (__m512bh)_mm512_set1_epi32((int)k[r * k_row + c]);
            for (int v = 0; v < QV; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], kb, q[v]);
        }
    }
    store_scores512(acc, nk, s, tmax, causal, query0, key0);
}

/* O^T rows c0..c0+nc: (first ? 0 : alpha * O^T[c]) + sum over key pairs of V^T[c][pair] . P^T[pair]. */
BF16 ALWAYS_INLINE void values_bf16(const uint32_t *p, int64_t pairs, const uint32_t *vt, int64_t v_row, float *ot,
                                    const int nc, const __m512 *alpha, int first) {
    __m512 acc[RB][QV];
    for (int r = 0; r < nc; r++)
        for (int w = 0; w < QV; w++)
            acc[r][w] = first ? _mm512_setzero_ps() : _mm512_mul_ps(_mm512_loadu_ps(ot + r * QT + 16 * w), alpha[w]);
    for (int64_t j = 0; j < pairs; j++) {
        __m512bh pj[QV];
        for (int w = 0; w < QV; w++) pj[w] = (__m512bh)_mm512_loadu_si512(p + j * QT + 16 * w);
        for (int r = 0; r < nc; r++) {
            const __m512bh vb = (__m512bh)_mm512_set1_epi32((int)vt[r * v_row + j]);
            for (int w = 0; w < QV; w++) acc[r][w] = _mm512_dpbf16_ps(acc[r][w], vb, pj[w]);
        }
    }
    for (int r = 0; r < nc; r++)
        for (int w = 0; w < QV; w++) _mm512_storeu_ps(ot + r * QT + 16 * w, acc[r][w]);
}

/* The pack with AVX-512: K rows converted 16 values at a time; V transposed in 16 x 16 blocks (keys x head-dim
   columns), then each column's 16 keys converted and stored as one row piece of V^T. Rounding as vcvtneps2bf16
   (nearest even; subnormals flushed, which no attention input has). Padding is written as zeros. */
BF16 static void pack512(const sdk_attention_args *a, int64_t batch_head, void *packed) {
    const packed_layout p = layout(a);
    const int64_t d = a->head_dim, dim = a->heads * d, lk = a->key_tokens;
    const int64_t bi = batch_head / a->heads, h = batch_head % a->heads;
    const float *k = a->k + bi * lk * dim + h * d, *v = a->v + bi * lk * dim + h * d;
    uint16_t *kp = (uint16_t *)((char *)packed + batch_head * p.bytes);
    uint16_t *vt = (uint16_t *)((char *)kp + p.k_bytes);
    for (int64_t j = 0; j < lk; j++)
        for (int64_t c = 0; c < p.k_row; c += 16) {
            const __mmask16 in = first_lanes(d - c), out = first_lanes(p.k_row - c);
            _mm256_mask_storeu_epi16(kp + j * p.k_row + c, out, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(in, k + j * dim + c)));
        }
    for (int64_t j = 0; j < p.v_row; j += 16)
        for (int64_t c = 0; c < d; c += 16) {
            const __mmask16 cols = first_lanes(d - c), keys = first_lanes(p.v_row - j);
            __m512 r[16];
            for (int i = 0; i < 16; i++) r[i] = j + i < lk ? _mm512_maskz_loadu_ps(cols, v + (j + i) * dim + c) : _mm512_setzero_ps();
            transpose16x16(r);
            for (int i = 0; i < 16 && c + i < d; i++)
                _mm256_mask_storeu_epi16(vt + (c + i) * p.v_row + j, keys, (__m256i)_mm512_cvtneps_pbh(r[i]));
        }
}

BF16 static void task_bf16(const sdk_attention_args *a, const task_view *t, const void *packed, float *scratch) {
    const packed_layout pl = layout(a);
    const int64_t d = t->d, pairs = pl.k_row / 2, k_row = pl.k_row / 2, v_row = pl.v_row / 2;
    const uint32_t *kp = (const uint32_t *)((const char *)packed + t->bh * pl.bytes);
    const uint32_t *vt = (const uint32_t *)((const char *)kp + pl.k_bytes);
    uint32_t *qt = (uint32_t *)scratch;
    float *s = scratch + pairs * QT;
    uint32_t *pt = (uint32_t *)(s + KEY_TILE * QT);
    float *ot = (float *)(pt + KEY_TILE / 2 * QT);
    pack_query512(t, a->scale * 1.4426950408889634f, ot);  /* log2(e): scores in base 2 */
    pair_rows(ot, d, qt);
    __m512 m[QV], l[QV], alpha[QV];
    for (int v = 0; v < QV; v++) { m[v] = _mm512_set1_ps(-INFINITY); l[v] = _mm512_setzero_ps(); }
    for (int64_t j0 = 0; j0 < t->keys; j0 += KEY_TILE) {
        const int64_t nk = t->keys - j0 < KEY_TILE ? t->keys - j0 : KEY_TILE;
        __m512 tmax[QV];
        for (int v = 0; v < QV; v++) tmax[v] = _mm512_set1_ps(-INFINITY);
        int64_t j = 0;
        for (; j + RB <= nk; j += RB)
            scores_bf16(qt, kp + (j0 + j) * k_row, k_row, pairs, s + j * QT, RB, tmax, a->causal, t->start, j0 + j);
#define SCORES(n) scores_bf16(qt, kp + (j0 + j) * k_row, k_row, pairs, s + j * QT, n, tmax, a->causal, t->start, j0 + j)
        switch (nk - j) { SDK_CASES_1_TO_7(SCORES) }
#undef SCORES
        softmax_step512(s, nk, tmax, m, l, alpha, exp2_nonpositive512, exp2_nonpositive512);  /* base 2 */
        /* An odd tile's last pair gets a zero weight; the key beyond it is padding or the next tile's. */
        pair_rows(s, nk, pt);
        const int first = j0 == 0;
        const int64_t key_pairs = (nk + 1) / 2;
        int64_t c = 0;
        for (; c + RB <= d; c += RB) values_bf16(pt, key_pairs, vt + c * v_row + j0 / 2, v_row, ot + c * QT, RB, alpha, first);
#define VALUES(n) values_bf16(pt, key_pairs, vt + c * v_row + j0 / 2, v_row, ot + c * QT, n, alpha, first)
        switch (d - c) { SDK_CASES_1_TO_7(VALUES) }
#undef VALUES
    }
    if (t->keys == 0) memset(ot, 0, sizeof(float) * d * QT);
    write_output512(t, ot, l);
}
#endif

int sdk_attention_bf16(const sdk_attention_args *a, int64_t task, const void *packed, float *scratch) {
#ifdef SDK_X86
    if (!sdk_has_avx512_bf16()) return -1;
    const task_view t = locate(a, task);
    task_bf16(a, &t, packed, scratch);
    return 0;
#else
    (void)a; (void)task; (void)packed; (void)scratch;
    return -1;
#endif
}

int sdk_attention_bf16_pack(const sdk_attention_args *a, int64_t batch_head, void *packed) {
#ifdef SDK_X86
    if (!sdk_has_avx512_bf16()) return -1;
    pack512(a, batch_head, packed);
    return 0;
#else
    (void)a; (void)batch_head; (void)packed;
    return -1;
#endif
}
