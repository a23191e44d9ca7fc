#include "ckernels.h"

#include <math.h>

/* Normalisation kernels. They repeat the portable Swift code's arithmetic order exactly (float runs of 32
   pixels added into double sums; separate multiply and add, no fused multiply-add), so group norm is
   bit-identical on either path; layer norm's double sums are added 8 lanes at a time instead of one by one. */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f")))

AVX512 static inline __mmask16 tail_mask(int64_t left) {
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}

AVX512 static void channel_sums512(const float *x, int64_t c, int64_t from, int64_t to, const float *centre,
                                   int squared, double *out) {
    for (int64_t j = 0; j < c; j++) out[j] = 0;
    for (int64_t p = from; p < to; p += 32) {
        const int64_t end = p + 32 < to ? p + 32 : to;
        for (int64_t j = 0; j < c; j += 16) {
            const __mmask16 k = tail_mask(c - j);
            const __m512 m = squared ? _mm512_maskz_loadu_ps(k, centre + j) : _mm512_setzero_ps();
            __m512 acc = _mm512_setzero_ps();
            for (int64_t q = p; q < end; q++) {
                const __m512 v = _mm512_maskz_loadu_ps(k, x + q * c + j);
                if (squared) {
                    const __m512 d = _mm512_sub_ps(v, m);
                    acc = _mm512_add_ps(acc, _mm512_mul_ps(d, d));
                } else {
                    acc = _mm512_add_ps(acc, v);
                }
            }
            const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(acc));
            const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1)));
            const __mmask8 klo = (__mmask8)(k & 0xFF), khi = (__mmask8)(k >> 8);
            _mm512_mask_storeu_pd(out + j, klo, _mm512_add_pd(_mm512_maskz_loadu_pd(klo, out + j), lo));
            if (khi) _mm512_mask_storeu_pd(out + j + 8, khi, _mm512_add_pd(_mm512_maskz_loadu_pd(khi, out + j + 8), hi));
        }
    }
}

AVX512 static void affine_rows512(const float *x, float *y, int64_t rows, int64_t c, const float *a, const float *b,
                                  int kind) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xi = x + r * c;
        float *yo = y + r * c;
        for (int64_t j = 0; j < c; j += 16) {
            const __mmask16 k = tail_mask(c - j);
            const __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, xi + j), _mm512_maskz_loadu_ps(k, a + j)),
                                           _mm512_maskz_loadu_ps(k, b + j));
            _mm512_mask_storeu_ps(yo + j, k, v);
        }
        if (kind) sdk_activation(yo, c, kind);
    }
}

AVX512 static void layer_norm_rows512(const float *x, float *y, int64_t rows, int64_t c, const float *g, const float *b,
                                      float eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xi = x + r * c;
        float *yo = y + r * c;
        __m512d s = _mm512_setzero_pd();
        for (int64_t j = 0; j < c; j += 8) {
            const __mmask8 k = c - j >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (c - j)) - 1);
            s = _mm512_add_pd(s, _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_maskz_loadu_ps((__mmask16)k, xi + j))));
        }
        const double mean = _mm512_reduce_add_pd(s) / (double)c;
        const __m512d vmean = _mm512_set1_pd(mean);
        __m512d sq = _mm512_setzero_pd();
        for (int64_t j = 0; j < c; j += 8) {
            const __mmask8 k = c - j >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (c - j)) - 1);
            const __m512d d = _mm512_maskz_sub_pd(k, _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_maskz_loadu_ps((__mmask16)k, xi + j))), vmean);
            sq = _mm512_add_pd(sq, _mm512_mul_pd(d, d));
        }
        const float rstd = (float)(1.0 / sqrt(_mm512_reduce_add_pd(sq) / (double)c + (double)eps));
        const __m512 vm = _mm512_set1_ps((float)mean), vr = _mm512_set1_ps(rstd);
        for (int64_t j = 0; j < c; j += 16) {
            const __mmask16 k = tail_mask(c - j);
            __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xi + j), vm), vr);
            v = _mm512_mul_ps(v, g ? _mm512_maskz_loadu_ps(k, g + j) : _mm512_set1_ps(1.0f));
            v = _mm512_add_ps(v, b ? _mm512_maskz_loadu_ps(k, b + j) : _mm512_setzero_ps());
            _mm512_mask_storeu_ps(yo + j, k, v);
        }
    }
}
#endif

int sdk_channel_sums(const float *x, int64_t c, int64_t from, int64_t to, const float *centre, int squared, double *out) {
#ifdef AVX512
    if (sdk_has_avx512()) { channel_sums512(x, c, from, to, centre, squared, out); return 1; }
#endif
    (void)x; (void)c; (void)from; (void)to; (void)centre; (void)squared; (void)out;
    return 0;
}

int sdk_affine_rows(const float *x, float *y, int64_t rows, int64_t c, const float *a, const float *b, int kind) {
#ifdef AVX512
    if (sdk_has_avx512()) { affine_rows512(x, y, rows, c, a, b, kind); return 1; }
#endif
    (void)x; (void)y; (void)rows; (void)c; (void)a; (void)b; (void)kind;
    return 0;
}

int sdk_layer_norm_rows(const float *x, float *y, int64_t rows, int64_t c, const float *g, const float *b, float eps) {
#ifdef AVX512
    if (sdk_has_avx512()) { layer_norm_rows512(x, y, rows, c, g, b, eps); return 1; }
#endif
    (void)x; (void)y; (void)rows; (void)c; (void)g; (void)b; (void)eps;
    return 0;
}
