/* bf16 attention on Intel AMX tiles (TDPBF16PS: a 16 x 16 fp32 tile += a 16 x 32 bf16 tile times a 32 x 16 one).
   A task is 128 queries of one (batch, head), taken in parts of 32; keys go by blocks of 128 with an online
   softmax, so a block's scores, weights and partial output stay in L1, and each block of K and V, loaded from L2
   once, serves the four parts (64 queries per task measured 5% slower at 4096 keys). Both products run as 2 x 2 blocks of tiles (tiles 0-3 accumulate, 4-5 hold two
   16-row A tiles, 6-7 two B tiles), so every tile load feeds two multiplies:
     S = Q K^T: A = the scaled bf16 queries [64][dp], B = K packed per 16 keys and 32 head-dim values as the tile
         unit wants it (rows of head-dim pairs, one pair per key);
     the softmax step of each score row in fp32 and base 2 (Q carries log2(e)), the weights rounded to bf16 into P;
     O_block = P V: A = P, B = V packed per 32 keys and 16 head-dim columns (rows of key pairs, one per column),
     then O = alpha O + O_block in AVX-512.
   Head dims and keys are padded to 32 with zeros (padded keys get weight 0). The numerics are the AVX-512 bf16
   kernel's: Q, K, V and P rounded to nearest-even bf16, products accumulated in fp32. */
#include "attention_tiles.h"

#ifdef SDK_X86
#include <cpuid.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define AQ 128  /* queries per task */
#define HQ 32   /* queries per part: the two 16-row A tiles */
#define KBLK 128 /* keys per softmax step */

static inline int64_t round_up32(int64_t x) { return (x + 31) / 32 * 32; }

/* One head's packed slice: K tiles then V tiles, dp x np bf16 each. */
/* ss, ps: the score and weight rows' strides (floats, bf16 values), a cache line past the block, so that the 16
   rows of a tile are not a power of two apart (which puts them all in one L1 set). */
typedef struct { int64_t dp, np, ss, ps, half_bytes; } amx_layout;

static amx_layout amx_layout_of(const sdk_attention_args *a) {
    amx_layout p;
    p.dp = round_up32(a->head_dim);
    p.np = round_up32(a->key_tokens);
    p.ss = KBLK + 16;
    p.ps = KBLK + 32;
    p.half_bytes = p.dp * p.np * 2;
    return p;
}

int sdk_attention_amx_available(void) {
#if defined(SDK_X86) && defined(__linux__)
    static int cached = -1;
    if (cached < 0) {
        /* AMX-TILE is leaf 7.0 EDX bit 24; Linux hands out the 8 KiB tile state only to a process that asks
           (ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, 18); oneDNN asks the same way, and asking twice is fine. */
        unsigned r[4] = {0, 0, 0, 0};
        const int tiles = __get_cpuid_count(7, 0, &r[0], &r[1], &r[2], &r[3]) && (r[3] >> 24 & 1);
        cached = tiles && sdk_has_amx_bf16() && sdk_has_avx512_bf16() && syscall(SYS_arch_prctl, 0x1023, 18) == 0 ? 1 : 0;
    }
    return cached;
#else
    return 0;
#endif
}

int64_t sdk_attention_amx_tasks(const sdk_attention_args *a) {
    return a->batch * a->heads * ((a->query_tokens + AQ - 1) / AQ);
}

int64_t sdk_attention_amx_packed_bytes(const sdk_attention_args *a) {
    return a->batch * a->heads * 2 * amx_layout_of(a).half_bytes;
}

int64_t sdk_attention_amx_scratch_bytes(const sdk_attention_args *a) {
    const amx_layout p = amx_layout_of(a);
    /* Q (bf16) and O (fp32) for the task; two sets of S (fp32) and P (bf16) and one block output (fp32) of a part.
       Each is a whole number of cache lines (dp, ss and ps are multiples of 16 or 32). */
    return AQ * (p.dp * 2 + p.dp * 4) + HQ * (2 * (p.ss * 4 + p.ps * 2) + p.dp * 4) + 64;
}

#ifdef SDK_X86
#define AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))  /* every AMX CPU has these */

typedef struct __attribute__((aligned(64))) {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* Every tile used is 16 rows of 64 bytes. */
AMX static void configure_tiles(void) {
    tile_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) { c.colsb[t] = 64; c.rows[t] = 16; }
    _tile_loadconfig(&c);
}

/* 32 fp32 values (masked to `n`) scaled, as 32 bf16 in order: lane i holds elements 2i and 2i+1. */
AMX ALWAYS_INLINE __m512i bf16x32(const float *src, int64_t n, __m512 scale) {
    const __m512 lo = _mm512_mul_ps(_mm512_maskz_loadu_ps(first_lanes(n), src), scale);
    const __m512 hi = _mm512_mul_ps(_mm512_maskz_loadu_ps(first_lanes(n - 16), src + 16), scale);
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

/* K as B tiles of S = Q K^T: tile (key block kb of 16, head-dim chunk c of 32) is 16 rows (head-dim pairs) of
   16 keys, at ((kb * dp/32 + c) * 16 + pair) * 32 + key * 2. Each key's 32 values are one row of pairs; a
   16 x 16 transpose of 32-bit pairs turns 16 keys into the tile. V as B tiles of O = P V: tile (key chunk kc of
   32, column block cb of 16) is 16 rows (key pairs) of 16 columns, at ((kc * dp/16 + cb) * 16 + pair) * 32 +
   column * 2. */
AMX static void pack_amx(const sdk_attention_args *a, int64_t batch_head, void *packed) {
    const amx_layout p = amx_layout_of(a);
    const int64_t d = a->head_dim, dim = a->heads * d, lk = a->key_tokens;
    const int64_t bi = batch_head / a->heads, h = batch_head % a->heads;
    const float *k = a->k + bi * lk * dim + h * d, *v = a->v + bi * lk * dim + h * d;
    uint16_t *kp = (uint16_t *)((char *)packed + batch_head * 2 * p.half_bytes);
    uint16_t *vp = (uint16_t *)((char *)kp + p.half_bytes);
    const __m512 one = _mm512_set1_ps(1);
    const int64_t chunks = p.dp / 32;
    for (int64_t kb = 0; kb < p.np / 16; kb++)
        for (int64_t c = 0; c < chunks; c++) {
            __m512 r[16];
            for (int n = 0; n < 16; n++) {
                const int64_t key = kb * 16 + n;
                r[n] = key < lk ? _mm512_castsi512_ps(bf16x32(k + key * dim + c * 32, d - c * 32, one)) : _mm512_setzero_ps();
            }
            transpose16x16(r);
            uint16_t *tile = kp + (kb * chunks + c) * 512;
            for (int i = 0; i < 16; i++) _mm512_storeu_ps(tile + i * 32, r[i]);
        }
    const int64_t blocks = p.dp / 16;
    for (int64_t kc = 0; kc < p.np / 32; kc++)
        for (int64_t cb = 0; cb < blocks; cb++) {
            uint16_t *tile = vp + (kc * blocks + cb) * 512;
            const __mmask16 cols = first_lanes(d - cb * 16);
            for (int i = 0; i < 16; i++) {
                const int64_t k0 = kc * 32 + 2 * i;
                const __m512 x = k0 < lk ? _mm512_maskz_loadu_ps(cols, v + k0 * dim + cb * 16) : _mm512_setzero_ps();
                const __m512 y = k0 + 1 < lk ? _mm512_maskz_loadu_ps(cols, v + (k0 + 1) * dim + cb * 16) : _mm512_setzero_ps();
                _mm512_storeu_si512(tile + i * 32, pair_bf16(x, y));
            }
        }
}

/* 2^x for finite x (scores minus a row maximum, so x <= 0): f = x - round(x) by vreduceps, 2^f by
   exp2_half_range512, 2^round(x) by vscalefps (which gives 0 far below); no clamp, as no score is -inf here. */
AMX ALWAYS_INLINE __m512 exp2_finite512(__m512 x) {
    const __m512 f = _mm512_reduce_ps(x, _MM_FROUND_TO_NEAREST_INT);
    return _mm512_scalef_ps(exp2_half_range512(f), _mm512_sub_ps(x, f));
}

/* The online-softmax step for score rows ra..<rb of a part, on a block of `nb` keys starting at key0: row r sees
   its first keys[r] keys. Updates the running maximum m (keeping the old one in mold), writes the bf16 weights to P
   (0 for keys the row does not see) and each row's sum to sums. softmax_finish then gives the factors
   alpha[r] = 2^(m_old - m_new) that rescale what each row accumulated before (0 on the first block) and the running
   sums, as vector operations over the rows: a scalar exp2f per row and block cost a tenth of the kernel. */
AMX static void softmax_rows(const float *s, int64_t ss, int64_t nb, int64_t key0, const int64_t *keys, uint16_t *pw,
                             int64_t ps, float *m, float *mold, float *sums, int ra, int rb) {
    for (int r = ra; r < rb; r++) {
        const float *row = s + r * ss;
        const int64_t n = keys[r] - key0 < 0 ? 0 : keys[r] - key0 > nb ? nb : keys[r] - key0;
        mold[r] = m[r];
        sums[r] = 0;
        if (n == 0) {  /* causal rows before this block's first key: nothing new (and they saw key 0 before) */
            memset(pw + r * ps, 0, 2 * (size_t)nb);
            continue;
        }
        __m512 mx = _mm512_set1_ps(-INFINITY);
        __m512 sum = _mm512_setzero_ps();
        if (n == nb) {  /* the usual case, without masks (nb is a multiple of 32) */
            __m512 mx1 = mx;
            for (int64_t j = 0; j < nb; j += 32) {
                mx = _mm512_max_ps(mx, _mm512_loadu_ps(row + j));
                mx1 = _mm512_max_ps(mx1, _mm512_loadu_ps(row + j + 16));
            }
            const float mnew = fmaxf(m[r], _mm512_reduce_max_ps(_mm512_max_ps(mx, mx1)));
            m[r] = mnew;
            const __m512 vmax = _mm512_set1_ps(mnew);
            __m512 sum1 = sum;
            for (int64_t j = 0; j < nb; j += 32) {
                const __m512 e0 = exp2_finite512(_mm512_sub_ps(_mm512_loadu_ps(row + j), vmax));
                const __m512 e1 = exp2_finite512(_mm512_sub_ps(_mm512_loadu_ps(row + j + 16), vmax));
                sum = _mm512_add_ps(sum, e0);
                sum1 = _mm512_add_ps(sum1, e1);
                _mm512_storeu_si512(pw + r * ps + j, (__m512i)_mm512_cvtne2ps_pbh(e1, e0));
            }
            sums[r] = _mm512_reduce_add_ps(_mm512_add_ps(sum, sum1));
            continue;
        }
        for (int64_t j = 0; j < n; j += 16) mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(mx, first_lanes(n - j), row + j));
        const float mnew = fmaxf(m[r], _mm512_reduce_max_ps(mx));
        m[r] = mnew;
        const __m512 vmax = _mm512_set1_ps(mnew);
        for (int64_t j = 0; j < nb; j += 32) {
            const __m512 e0 = _mm512_maskz_mov_ps(first_lanes(n - j), exp2_finite512(_mm512_sub_ps(_mm512_loadu_ps(row + j), vmax)));
            const __m512 e1 = _mm512_maskz_mov_ps(first_lanes(n - j - 16), exp2_finite512(_mm512_sub_ps(_mm512_loadu_ps(row + j + 16), vmax)));
            sum = _mm512_add_ps(sum, _mm512_add_ps(e0, e1));
            _mm512_storeu_si512(pw + r * ps + j, (__m512i)_mm512_cvtne2ps_pbh(e1, e0));
        }
        sums[r] = _mm512_reduce_add_ps(sum);
    }
}

/* After softmax_rows over all HQ rows: alpha = 2^(m_old - m_new) and l = alpha l + the block's sums, as vectors. */
AMX static void softmax_finish(const float *m, const float *mold, const float *sums, float *l, float *alpha) {
    for (int r = 0; r < HQ; r += 16) {
        /* exp2_nonpositive512 takes m_old = -inf (the first block) to 0. */
        const __m512 al = exp2_nonpositive512(_mm512_sub_ps(_mm512_loadu_ps(mold + r), _mm512_loadu_ps(m + r)));
        _mm512_storeu_ps(alpha + r, al);
        _mm512_storeu_ps(l + r, _mm512_fmadd_ps(_mm512_loadu_ps(l + r), al, _mm512_loadu_ps(sums + r)));
    }
}

/* Step kb (a pair of 16-key tiles) of S (HQ x nb, stride ss) = the part's queries (rows 16 apart in qb) times the
   block's keys. */
AMX ALWAYS_INLINE void scores_step(const uint16_t *qb, int64_t dp, const uint16_t *kp, int64_t kb0, int64_t kb, float *s, int64_t ss) {
    const int64_t chunks = dp / 32;
    const uint16_t *k0 = kp + ((kb0 / 16 + kb) * chunks) * 512, *k1 = k0 + chunks * 512;
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    for (int64_t c = 0; c < chunks; c++) {
        _tile_loadd(4, qb + c * 32, dp * 2);
        _tile_loadd(5, qb + 16 * dp + c * 32, dp * 2);
        _tile_loadd(6, k0 + c * 512, 64);
        _tile_loadd(7, k1 + c * 512, 64);
        _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, s + kb * 16, ss * 4);
    _tile_stored(1, s + kb * 16 + 16, ss * 4);
    _tile_stored(2, s + 16 * ss + kb * 16, ss * 4);
    _tile_stored(3, s + 16 * ss + kb * 16 + 16, ss * 4);
}

/* Columns cb..cb+31 of ob (HQ x dp) = P (HQ x nb, stride ps) times the block's values. */
AMX ALWAYS_INLINE void values_step(const uint16_t *pw, int64_t ps, const uint16_t *vp, int64_t kb0, int64_t nb, int64_t dp, int64_t cb, float *ob) {
    const int64_t blocks = dp / 16;
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    for (int64_t kc = 0; kc < nb / 32; kc++) {
        const uint16_t *v0 = vp + ((kb0 / 32 + kc) * blocks + cb) * 512;
        _tile_loadd(4, pw + kc * 32, ps * 2);
        _tile_loadd(5, pw + 16 * ps + kc * 32, ps * 2);
        _tile_loadd(6, v0, 64);
        _tile_loadd(7, v0 + 512, 64);
        _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, ob + cb * 16, dp * 4);
    _tile_stored(1, ob + cb * 16 + 16, dp * 4);
    _tile_stored(2, ob + 16 * dp + cb * 16, dp * 4);
    _tile_stored(3, ob + 16 * dp + cb * 16 + 16, dp * 4);
}

/* One part's per-block state: its scores and weights (two sets, for the pipeline below) and the softmax step. */
typedef struct { float *s; uint16_t *pw; float mold[HQ], sums[HQ], alpha[HQ]; } part_buffers;

AMX static void task_amx(const sdk_attention_args *a, int64_t task, const void *packed, void *scratch) {
    const amx_layout p = amx_layout_of(a);
    const int64_t tiles = (a->query_tokens + AQ - 1) / AQ;
    const int64_t bh = task / tiles, bi = bh / a->heads, h = bh % a->heads;
    const int64_t start = (task % tiles) * AQ, d = a->head_dim, dim = a->heads * d, dp = p.dp, np = p.np;
    const int64_t rows = a->query_tokens - start < AQ ? a->query_tokens - start : AQ;
    const float *q = a->q + (bi * a->query_tokens + start) * dim + h * d;
    float *out = a->out + (bi * a->query_tokens + start) * dim + h * d;
    if (a->key_tokens == 0) {
        for (int r = 0; r < rows; r++) memset(out + r * dim, 0, sizeof(float) * d);
        return;
    }
    const uint16_t *kp = (const uint16_t *)((const char *)packed + bh * 2 * p.half_bytes);
    const uint16_t *vp = (const uint16_t *)((const char *)kp + p.half_bytes);
    char *base = (char *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    uint16_t *qb = (uint16_t *)base;
    float *o = (float *)(qb + AQ * dp);
    part_buffers buf[2];
    float *next = o + AQ * dp;
    for (int i = 0; i < 2; i++) {
        buf[i].s = next;
        buf[i].pw = (uint16_t *)(buf[i].s + HQ * p.ss);
        next = (float *)(buf[i].pw + HQ * p.ps);
    }
    float *ob = next;
    float m[AQ], l[AQ];
    int64_t keys[AQ];

    const __m512 scale = _mm512_set1_ps(a->scale * 1.4426950408889634f);  /* log2(e): scores in base 2 */
    for (int r = 0; r < AQ; r++) {
        for (int64_t c = 0; c < dp; c += 32)
            _mm512_storeu_si512(qb + r * dp + c, r < rows ? bf16x32(q + r * dim + c, d - c, scale) : _mm512_setzero_si512());
        keys[r] = a->causal && start + r + 1 < a->key_tokens ? start + r + 1 : a->key_tokens;
        m[r] = -INFINITY;
        l[r] = 0;
    }
    const int parts = (int)((rows + HQ - 1) / HQ);
    configure_tiles();
    /* A software pipeline over the parts of each key block, so that the tile unit and the vector units work at the
       same time: the scores of part i+1 and the values of part i-1 (tile steps) are interleaved with the softmax
       of part i (vector rows). Done one after the other they took the sum of their times. */
    for (int64_t kb0 = 0; kb0 < np; kb0 += KBLK) {
        const int64_t nb = np - kb0 < KBLK ? np - kb0 : KBLK;
        int live[AQ / HQ];
        /* Causal: a part whose last row (which sees the most keys) sees none of this block skips it. */
        for (int i = 0; i < parts; i++) live[i] = keys[i * HQ + HQ - 1] > kb0;
        for (int it = 0; it <= parts + 1; it++) {
            const int nx = it < parts && live[it] ? it : -1;                   /* scores */
            const int cur = it >= 1 && it - 1 < parts && live[it - 1] ? it - 1 : -1;  /* softmax */
            const int pv = it >= 2 && live[it - 2] ? it - 2 : -1;             /* values */
            const int score_steps = nx >= 0 ? (int)(nb / 32) : 0, value_steps = pv >= 0 ? (int)(dp / 32) : 0;
            const int steps = score_steps + value_steps;
            const int per = steps > 0 ? (HQ + steps - 1) / steps : HQ;
            int done = 0;
            for (int st = 0; st < steps || done < (cur >= 0 ? HQ : 0); st++) {
                if (st < score_steps) scores_step(qb + nx * HQ * dp, dp, kp, kb0, 2 * st, buf[nx & 1].s, p.ss);
                else if (st < steps) values_step(buf[pv & 1].pw, p.ps, vp, kb0, nb, dp, 32 * (st - score_steps) / 16, ob);
                if (cur >= 0 && done < HQ) {
                    const int upto = done + per < HQ ? done + per : HQ;
                    part_buffers *b = &buf[cur & 1];
                    softmax_rows(b->s, p.ss, nb, kb0, keys + cur * HQ, b->pw, p.ps, m + cur * HQ, b->mold, b->sums, done, upto);
                    done = upto;
                }
            }
            if (cur >= 0) softmax_finish(m + cur * HQ, buf[cur & 1].mold, buf[cur & 1].sums, l + cur * HQ, buf[cur & 1].alpha);
            if (pv >= 0) {
                float *acc = o + pv * HQ * dp;
                const float *alpha = buf[pv & 1].alpha;
                for (int r = 0; r < HQ; r++) {
                    const __m512 al = _mm512_set1_ps(alpha[r]);
                    for (int64_t c = 0; c < dp; c += 16) {
                        const __m512 x = _mm512_loadu_ps(ob + r * dp + c);
                        _mm512_storeu_ps(acc + r * dp + c, kb0 == 0 ? x : _mm512_fmadd_ps(_mm512_loadu_ps(acc + r * dp + c), al, x));
                    }
                }
            }
        }
    }
    for (int r = 0; r < rows; r++) {
        const __m512 inv = _mm512_set1_ps(l[r] > 0 ? 1 / l[r] : 0);
        for (int64_t c = 0; c < d; c += 16)
            _mm512_mask_storeu_ps(out + r * dim + c, first_lanes(d - c), _mm512_mul_ps(_mm512_loadu_ps(o + r * dp + c), inv));
    }
}

AMX static void release_tiles(void) { _tile_release(); }
#endif

int sdk_attention_amx_pack(const sdk_attention_args *a, int64_t batch_head, void *packed) {
#ifdef SDK_X86
    if (!sdk_attention_amx_available()) return -1;
    pack_amx(a, batch_head, packed);
    return 0;
#else
    (void)a; (void)batch_head; (void)packed;
    return -1;
#endif
}

int sdk_attention_amx(const sdk_attention_args *a, int64_t first, int64_t count, const void *packed, void *scratch) {
#ifdef SDK_X86
    if (!sdk_attention_amx_available()) return -1;
    for (int64_t t = first; t < first + count; t++) task_amx(a, t, packed, scratch);
    release_tiles();
    return 0;
#else
    (void)a; (void)first; (void)count; (void)packed; (void)scratch;
    return -1;
#endif
}
