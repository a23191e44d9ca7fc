/* fp32 fused attention with AVX-512 (see attention_tiles.h for the tiling). */
#include "attention_tiles.h"

int64_t sdk_attention_tasks(const sdk_attention_args *a) {
    return a->batch * a->heads * ((a->query_tokens + QT - 1) / QT);
}

int64_t sdk_attention_scratch_floats(const sdk_attention_args *a) {
    return 2 * a->head_dim * QT + (int64_t)KEY_TILE * QT;
}

#ifdef SDK_X86
/* S^T rows key0..key0+nk: acc[r] = sum_c K[key0 + r][c] * Q^T[c]. nk is a constant after inlining, so the
   accumulators live in registers (RB * QV = 24 of the 32). */
AVX512 ALWAYS_INLINE void scores512(const float *qt, const float *k, int64_t dim, int64_t d, float *s, const int nk,
                                    __m512 *tmax, int causal, int64_t query0, int64_t key0) {
    __m512 acc[RB][QV];
    for (int r = 0; r < nk; r++)
        for (int v = 0; v < QV; v++) acc[r][v] = _mm512_setzero_ps();
    for (int64_t c = 0; c < d; c++) {
        __m512 q[QV];
        for (int v = 0; v < QV; v++) q[v] = _mm512_loadu_ps(qt + c * QT + 16 * v);
        for (int r = 0; r < nk; r++) {
            const __m512 kb = _mm512_set1_ps(k[r * dim + c]);
            for (int v = 0; v < QV; v++) acc[r][v] = _mm512_fmadd_ps(kb, q[v], acc[r][v]);
        }
    }
    store_scores512(acc, nk, s, tmax, causal, query0, key0);
}

/* O^T rows c0..c0+nc: (first ? 0 : alpha * O^T[c]) + sum_j V[j][c] * P^T[j]. */
AVX512 ALWAYS_INLINE void values512(const float *p, int64_t nk, const float *v, int64_t dim, float *ot, const int nc,
                                    const __m512 *alpha, int first) {
    __m512 acc[RB][QV];
    for (int r = 0; r < nc; r++)
        for (int w = 0; w < QV; w++)
            acc[r][w] = first ? _mm512_setzero_ps() : _mm512_mul_ps(_mm512_loadu_ps(ot + r * QT + 16 * w), alpha[w]);
    for (int64_t j = 0; j < nk; j++) {
        __m512 pj[QV];
        for (int w = 0; w < QV; w++) pj[w] = _mm512_loadu_ps(p + j * QT + 16 * w);
        for (int r = 0; r < nc; r++) {
            const __m512 vb = _mm512_set1_ps(v[j * dim + r]);
            for (int w = 0; w < QV; w++) acc[r][w] = _mm512_fmadd_ps(vb, pj[w], acc[r][w]);
        }
    }
    for (int r = 0; r < nc; r++)
        for (int w = 0; w < QV; w++) _mm512_storeu_ps(ot + r * QT + 16 * w, acc[r][w]);
}

AVX512 static void task512(const sdk_attention_args *a, const task_view *t, float *scratch) {
    const int64_t d = t->d, dim = t->dim;
    float *qt = scratch, *ot = qt + d * QT, *s = ot + d * QT;
    pack_query512(t, a->scale, qt);
    __m512 m[QV], l[QV], alpha[QV];
    for (int v = 0; v < QV; v++) { m[v] = _mm512_set1_ps(-INFINITY); l[v] = _mm512_setzero_ps(); }
    for (int64_t j0 = 0; j0 < t->keys; j0 += KEY_TILE) {
        const int64_t nk = t->keys - j0 < KEY_TILE ? t->keys - j0 : KEY_TILE;
        __m512 tmax[QV];
        for (int v = 0; v < QV; v++) tmax[v] = _mm512_set1_ps(-INFINITY);
        int64_t j = 0;
        for (; j + RB <= nk; j += RB)
            scores512(qt, t->k + (j0 + j) * dim, dim, d, s + j * QT, RB, tmax, a->causal, t->start, j0 + j);
#define SCORES(n) scores512(qt, t->k + (j0 + j) * dim, dim, d, s + j * QT, n, tmax, a->causal, t->start, j0 + j)
        switch (nk - j) { SDK_CASES_1_TO_7(SCORES) }
#undef SCORES
        softmax_step512(s, nk, tmax, m, l, alpha, exp_nonpositive512, exp512);
        const int first = j0 == 0;
        int64_t c = 0;
        for (; c + RB <= d; c += RB) values512(s, nk, t->v + j0 * dim + c, dim, ot + c * QT, RB, alpha, first);
#define VALUES(n) values512(s, nk, t->v + j0 * dim + c, dim, ot + c * QT, n, alpha, first)
        switch (d - c) { SDK_CASES_1_TO_7(VALUES) }
#undef VALUES
    }
    if (t->keys == 0) memset(ot, 0, sizeof(float) * d * QT);
    write_output512(t, ot, l);
}
#endif

int sdk_attention_f32(const sdk_attention_args *a, int64_t task, float *scratch) {
#ifdef SDK_X86
    if (!sdk_has_avx512()) return -1;
    const task_view t = locate(a, task);
    task512(a, &t, scratch);
    return 0;
#else
    (void)a; (void)task; (void)scratch;
    return -1;
#endif
}
