/* The tiling shared by the fp32 and bf16 attention kernels (internal to CKernels).

   One task = one (batch, head, query tile of QT rows), sweeping the keys in tiles of KEY_TILE with an online
   softmax, so only a KEY_TILE x QT block of scores ever exists (in L1). The tiles are held transposed,
   queries in the vector lanes: Q^T is [head_dim][QT], the scores S^T are [keys][QT] and the output
   accumulator O^T is [head_dim][QT]. Then the running maximum, the sum and the rescaling of the accumulator
   are per-lane operations (no horizontal reductions), and both products are broadcast-FMA loops:
   S^T[j] += K[j][c] * Q^T[c] over c, O^T[c] += V[j][c] * P^T[j] over j. */
#ifndef SDK_ATTENTION_TILES_H
#define SDK_ATTENTION_TILES_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ckernels.h"
#include "sdk_attention.h"
#include "simd_math.h"

#define QT SDK_ATTENTION_QUERY_TILE
#define QV (QT / 16)  /* query vectors per tile */
#define KEY_TILE 128  /* keys per softmax step: S^T is 24 KiB, in L1 beside the Q^T and O^T rows in use */
#define RB 8          /* register block: keys per score block, head-dim rows per output block */

#define ALWAYS_INLINE static inline __attribute__((always_inline))

typedef struct {
    const float *q, *k, *v;  /* this task's first query row, its head's first key and value rows */
    float *out;
    int64_t dim, d, start, rows, keys, bh;
} task_view;

static inline task_view locate(const sdk_attention_args *a, int64_t task) {
    const int64_t tiles = (a->query_tokens + QT - 1) / QT;
    const int64_t bi = task / (a->heads * tiles), h = (task / tiles) % a->heads;
    task_view t;
    t.dim = a->heads * a->head_dim;
    t.d = a->head_dim;
    t.start = (task % tiles) * QT;
    t.rows = a->query_tokens - t.start < QT ? a->query_tokens - t.start : QT;
    t.q = a->q + (bi * a->query_tokens + t.start) * t.dim + h * t.d;
    t.out = a->out + (bi * a->query_tokens + t.start) * t.dim + h * t.d;
    t.k = a->k + bi * a->key_tokens * t.dim + h * t.d;
    t.v = a->v + bi * a->key_tokens * t.dim + h * t.d;
    /* Causal: keys after the tile's last query are masked for every row, so they are never visited. */
    t.keys = a->key_tokens;
    if (a->causal && t.start + t.rows < t.keys) t.keys = t.start + t.rows;
    t.bh = bi * a->heads + h;
    return t;
}

/* switch cases calling a block function with a constant 1...7 (the tails of the register blocks). */
#define SDK_CASES_1_TO_7(call) \
    case 1: call(1); break; case 2: call(2); break; case 3: call(3); break; case 4: call(4); break; \
    case 5: call(5); break; case 6: call(6); break; case 7: call(7); break; default: break;

#ifdef SDK_X86
/* Lanes of query vector `v` whose query precedes key `key` (masked under the causal rule). */
AVX512 ALWAYS_INLINE __mmask16 causal_mask512(int64_t query0, int v, int64_t key) {
    const __m512i lanes = _mm512_add_epi32(_mm512_set1_epi32((int)(query0 + 16 * v)),
                                           _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    return _mm512_cmp_epi32_mask(lanes, _mm512_set1_epi32((int)key), _MM_CMPINT_LT);
}

/* Stores an nk x QV block of scores (masked when causal) and folds it into the tile's maximum. */
AVX512 ALWAYS_INLINE void store_scores512(__m512 acc[RB][QV], const int nk, float *s, __m512 *tmax,
                                          int causal, int64_t query0, int64_t key0) {
    for (int r = 0; r < nk; r++)
        for (int v = 0; v < QV; v++) {
            __m512 x = acc[r][v];
            if (causal) x = _mm512_mask_mov_ps(x, causal_mask512(query0, v, key0 + r), _mm512_set1_ps(-INFINITY));
            _mm512_storeu_ps(s + r * QT + 16 * v, x);
            tmax[v] = _mm512_max_ps(tmax[v], x);
        }
}

/* e^x for x <= 0 (a score minus its running maximum): exp512's polynomial without the overflow branch and
   with 2^n by vscalefps; -inf and anything below -87.3 give 0. */
AVX512 ALWAYS_INLINE __m512 exp_nonpositive512(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.33654f);
    const __mmask16 live = _mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ);
    const __m512 xc = _mm512_max_ps(x, lo);
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    const __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(xc, _mm512_set1_ps(1.442695040888963f), magic), magic);
    const __m512 er = exp_reduced512(xc, n);
    return _mm512_maskz_scalef_ps(live, er, n);
}

/* 2^f for |f| <= 1/2 by a degree-4 polynomial: relative error 2.7e-6, far below the 2^-9 of the bf16 rounding
   the softmax weights then get. */
AVX512 ALWAYS_INLINE __m512 exp2_half_range512(__m512 f) {
    __m512 p = _mm512_set1_ps(9.570102207362652e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.591786280274391e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.40247443318367e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931217908859253e-1f));
    return _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.999992847442627e-1f));
}

/* 2^x for x <= 0 (a base-2 score minus its running maximum): x = n + f with n = round(x), |f| <= 1/2, 2^f by
   exp2_half_range512, 2^n by vscalefps; -inf and anything below -126 give 0. */
AVX512 ALWAYS_INLINE __m512 exp2_nonpositive512(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-126.0f);
    const __mmask16 live = _mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ);
    const __m512 xc = _mm512_max_ps(x, lo);
    const __m512 n = _mm512_roundscale_ps(xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_maskz_scalef_ps(live, exp2_half_range512(_mm512_sub_ps(xc, n)), n);
}

typedef __m512 (*exp512_fn)(__m512);

/* The online-softmax step on a tile of nk score rows: new running maximum m, weights exp(s - m) in place,
   running sum l, and alpha = exp(m_old - m_new), the factor that rescales what was accumulated before.
   `weight_exp` and `alpha_exp` are the exponentials (the bf16 kernel's are base 2; constants, so inlined). */
AVX512 ALWAYS_INLINE void softmax_step512(float *s, int64_t nk, const __m512 *tmax, __m512 *m, __m512 *l, __m512 *alpha,
                                          exp512_fn weight_exp, exp512_fn alpha_exp) {
    __m512 muse[QV], sum[QV];
    for (int v = 0; v < QV; v++) {
        const __m512 mnew = _mm512_max_ps(m[v], tmax[v]);
        /* A lane that has seen only masked keys keeps weights and alpha 0 (exp(-inf - 0)). */
        muse[v] = _mm512_mask_mov_ps(mnew, _mm512_cmp_ps_mask(mnew, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ), _mm512_setzero_ps());
        alpha[v] = alpha_exp(_mm512_sub_ps(m[v], muse[v]));
        m[v] = mnew;
        sum[v] = _mm512_setzero_ps();
    }
    for (int64_t j = 0; j < nk; j++)
        for (int v = 0; v < QV; v++) {
            const __m512 e = weight_exp(_mm512_sub_ps(_mm512_loadu_ps(s + j * QT + 16 * v), muse[v]));
            _mm512_storeu_ps(s + j * QT + 16 * v, e);
            sum[v] = _mm512_add_ps(sum[v], e);
        }
    for (int v = 0; v < QV; v++) l[v] = _mm512_fmadd_ps(l[v], alpha[v], sum[v]);
}

/* r[i][j] <-> r[j][i] for a 16 x 16 block held in 16 registers: 2x2 and 4x4 element transposes within the
   128-bit lanes, then a 4x4 transpose of the lanes. */
#define PD(x) _mm512_castps_pd(x)
#define PS(x) _mm512_castpd_ps(x)
AVX512 ALWAYS_INLINE void transpose16x16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* Then r[4g + m], lane L holds rows 4g...4g+3 of column 4L + m. */
    for (int i = 0; i < 16; i += 4) {
        r[i] = PS(_mm512_unpacklo_pd(PD(t[i]), PD(t[i + 2])));
        r[i + 1] = PS(_mm512_unpackhi_pd(PD(t[i]), PD(t[i + 2])));
        r[i + 2] = PS(_mm512_unpacklo_pd(PD(t[i + 1]), PD(t[i + 3])));
        r[i + 3] = PS(_mm512_unpackhi_pd(PD(t[i + 1]), PD(t[i + 3])));
    }
    for (int m = 0; m < 4; m++) {
        t[m] = _mm512_shuffle_f32x4(r[m], r[4 + m], 0x88);
        t[4 + m] = _mm512_shuffle_f32x4(r[m], r[4 + m], 0xDD);
        t[8 + m] = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0x88);
        t[12 + m] = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0xDD);
    }
    for (int m = 0; m < 4; m++) {
        r[m] = _mm512_shuffle_f32x4(t[m], t[8 + m], 0x88);
        r[8 + m] = _mm512_shuffle_f32x4(t[m], t[8 + m], 0xDD);
        r[4 + m] = _mm512_shuffle_f32x4(t[4 + m], t[12 + m], 0x88);
        r[12 + m] = _mm512_shuffle_f32x4(t[4 + m], t[12 + m], 0xDD);
    }
}
#undef PD
#undef PS

#define BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))  /* every AVX512_BF16 CPU has VL */

/* Two fp32 rows (16 lanes each) as 16 bf16 pairs: lane i = (a[i], b[i]) (the bf16 kernels' pair layouts). */
BF16 ALWAYS_INLINE __m512i pair_bf16(__m512 a, __m512 b) {
    const __m512i interleave = _mm512_setr_epi32(
        0x00100000, 0x00110001, 0x00120002, 0x00130003, 0x00140004, 0x00150005, 0x00160006, 0x00170007,
        0x00180008, 0x00190009, 0x001A000A, 0x001B000B, 0x001C000C, 0x001D000D, 0x001E000E, 0x001F000F);
    return _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(b, a));
}

AVX512 ALWAYS_INLINE __mmask16 first_lanes(int64_t n) {
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* pack_query and write_output by 16 x 16 register transposes: done element by element they cost a fifth of
   a task when there are few keys (77 for cross-attention). */
AVX512 ALWAYS_INLINE void pack_query512(const task_view *t, float scale, float *qt) {
    const __m512 vscale = _mm512_set1_ps(scale);
    for (int v = 0; v < QV; v++)
        for (int64_t c = 0; c < t->d; c += 16) {
            const __mmask16 cols = first_lanes(t->d - c);
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = 16 * v + i < t->rows ? _mm512_maskz_loadu_ps(cols, t->q + (16 * v + i) * t->dim + c) : _mm512_setzero_ps();
            transpose16x16(r);
            for (int k = 0; k < 16 && c + k < t->d; k++) _mm512_storeu_ps(qt + (c + k) * QT + 16 * v, _mm512_mul_ps(r[k], vscale));
        }
}

AVX512 ALWAYS_INLINE void write_output512(const task_view *t, const float *ot, const __m512 *l) {
    for (int v = 0; v < QV && 16 * v < t->rows; v++) {
        const __mmask16 seen = _mm512_cmp_ps_mask(l[v], _mm512_setzero_ps(), _CMP_GT_OQ);
        const __m512 inv = _mm512_maskz_div_ps(seen, _mm512_set1_ps(1), l[v]);
        for (int64_t c = 0; c < t->d; c += 16) {
            const __mmask16 cols = first_lanes(t->d - c);
            __m512 r[16];
            for (int k = 0; k < 16; k++) r[k] = c + k < t->d ? _mm512_mul_ps(_mm512_loadu_ps(ot + (c + k) * QT + 16 * v), inv) : _mm512_setzero_ps();
            transpose16x16(r);
            for (int i = 0; i < 16 && 16 * v + i < t->rows; i++) _mm512_mask_storeu_ps(t->out + (16 * v + i) * t->dim + c, cols, r[i]);
        }
    }
}

#endif

#endif
