/* Winograd F(2x2, 3x3) transforms for bf16 3x3 convolutions (stride 1, padding 1), after Lavin & Gray,
   "Fast Algorithms for Convolutional Neural Networks" (2015). Each 2x2 output tile is A^T [(G g G^T) . (B^T d B)] A
   over its 4x4 input patch d: 16 products per tile and channel pair instead of 36, so the 16 batched GEMMs between
   the transforms (oneDNN's bf16 matmul) do 2.25x fewer multiplications than the direct convolution.

   Layouts: the input is NHWC (fp32 or bf16); the transformed input V is bf16 [16][rows][C] (rows = tiles of the
   chunk being run, tile index = (image * tiles_h + ty) * tiles_w + tx); the GEMMs' output M is fp32 [16][rows][K];
   the output is NHWC fp32. Tile (ty, tx) reads input rows 2ty-1 ... 2ty+2 and columns 2tx-1 ... 2tx+2 (zero
   outside: the padding) and writes output pixels 2ty, 2ty+1 x 2tx, 2tx+1 that exist. The transforms need
   AVX512-BF16, as every bf16 layer does (`ComputePrecision.bf16` is refused elsewhere). */
#include "ckernels.h"
#include "simd_math.h"

#include <stdint.h>

#ifdef SDK_X86
#define BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))  /* every AVX512_BF16 CPU has VL */

/* G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]: u[xi][ci][ko] = (G g[ko][ci] G^T)[xi], rounded to bf16,
   for input channels ci0 ..< ci1, 16 output channels at a time (g in HWIO order, [3][3][c][k], so every load and
   store runs along the output channels). */
BF16 static void weights512(const float *g, int64_t k, int64_t c, int64_t ci0, int64_t ci1, uint16_t *u) {
    const int64_t plane = c * k;
    const __m512 half = _mm512_set1_ps(0.5f);
    for (int64_t ci = ci0; ci < ci1; ci++)
        for (int64_t ko = 0; ko < k; ko += 16) {
            const __mmask16 lanes = k - ko >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - ko)) - 1);
            const float *w = g + ci * k + ko;
            __m512 t[4][3];
            for (int j = 0; j < 3; j++) {
                const __m512 a = _mm512_maskz_loadu_ps(lanes, w + j * plane), b = _mm512_maskz_loadu_ps(lanes, w + (3 + j) * plane),
                             e = _mm512_maskz_loadu_ps(lanes, w + (6 + j) * plane);
                t[0][j] = a;
                t[1][j] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(a, b), e));
                t[2][j] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(a, b), e));
                t[3][j] = e;
            }
            for (int i = 0; i < 4; i++) {
                const __m512 r[4] = {t[i][0], _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(t[i][0], t[i][1]), t[i][2])),
                                     _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(t[i][0], t[i][1]), t[i][2])), t[i][2]};
                for (int j = 0; j < 4; j++)
                    _mm256_mask_storeu_epi16(u + ((int64_t)(i * 4 + j) * c + ci) * k + ko, lanes, (__m256i)_mm512_cvtneps_pbh(r[j]));
            }
        }
}

BF16 static inline __m512 load_input(const void *src, int src_bf16, int64_t at, __mmask16 lanes) {
    if (src_bf16) {
        const __m256i b = _mm256_maskz_loadu_epi16(lanes, (const uint16_t *)src + at);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
    }
    return _mm512_maskz_loadu_ps(lanes, (const float *)src + at);
}

BF16 static void input512(const void *src, int src_bf16, int64_t h, int64_t w, int64_t c, int64_t tiles_h, int64_t tiles_w,
                          int64_t tile0, int64_t count, uint16_t *dst, int64_t row0, int64_t rows) {
    for (int64_t t = tile0; t < tile0 + count; t++) {
        const int64_t img = t / (tiles_h * tiles_w), ty = (t / tiles_w) % tiles_h, tx = t % tiles_w;
        uint16_t *row = dst + (row0 + (t - tile0)) * c;
        for (int64_t ch = 0; ch < c; ch += 16) {
            const __mmask16 lanes = c - ch >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (c - ch)) - 1);
            __m512 d[4][4], r[4][4];
            for (int i = 0; i < 4; i++) {
                const int64_t y = 2 * ty - 1 + i;
                for (int j = 0; j < 4; j++) {
                    const int64_t x = 2 * tx - 1 + j;
                    d[i][j] = y >= 0 && y < h && x >= 0 && x < w
                        ? load_input(src, src_bf16, ((img * h + y) * w + x) * c + ch, lanes) : _mm512_setzero_ps();
                }
            }
            for (int j = 0; j < 4; j++) {
                r[0][j] = _mm512_sub_ps(d[0][j], d[2][j]);
                r[1][j] = _mm512_add_ps(d[1][j], d[2][j]);
                r[2][j] = _mm512_sub_ps(d[2][j], d[1][j]);
                r[3][j] = _mm512_sub_ps(d[1][j], d[3][j]);
            }
            for (int i = 0; i < 4; i++) {
                const __m512 v[4] = {_mm512_sub_ps(r[i][0], r[i][2]), _mm512_add_ps(r[i][1], r[i][2]),
                                     _mm512_sub_ps(r[i][2], r[i][1]), _mm512_sub_ps(r[i][1], r[i][3])};
                for (int j = 0; j < 4; j++)
                    _mm256_mask_storeu_epi16(row + (int64_t)(i * 4 + j) * rows * c + ch, lanes,
                                             (__m256i)_mm512_cvtneps_pbh(v[j]));
            }
        }
    }
}

BF16 static void output512(const float *m, int64_t rows, int64_t row0, int64_t h, int64_t w, int64_t k, int64_t tiles_h,
                           int64_t tiles_w, int64_t tile0, int64_t count, const float *bias, int accumulate, float *out) {
    for (int64_t t = tile0; t < tile0 + count; t++) {
        const int64_t img = t / (tiles_h * tiles_w), ty = (t / tiles_w) % tiles_h, tx = t % tiles_w;
        const float *mt = m + (row0 + (t - tile0)) * k;
        const int rows_out = 2 * ty + 1 < h ? 2 : 1, cols_out = 2 * tx + 1 < w ? 2 : 1;
        for (int64_t ko = 0; ko < k; ko += 16) {
            const __mmask16 lanes = k - ko >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - ko)) - 1);
            __m512 v[16];
            for (int xi = 0; xi < 16; xi++) v[xi] = _mm512_maskz_loadu_ps(lanes, mt + (int64_t)xi * rows * k + ko);
            __m512 r[2][4];
            for (int j = 0; j < 4; j++) {
                r[0][j] = _mm512_add_ps(_mm512_add_ps(v[j], v[4 + j]), v[8 + j]);
                r[1][j] = _mm512_sub_ps(_mm512_sub_ps(v[4 + j], v[8 + j]), v[12 + j]);
            }
            const __m512 b = bias ? _mm512_maskz_loadu_ps(lanes, bias + ko) : _mm512_setzero_ps();
            for (int i = 0; i < rows_out; i++) {
                const __m512 y[2] = {_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(r[i][0], r[i][1]), r[i][2]), b),
                                     _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(r[i][1], r[i][2]), r[i][3]), b)};
                for (int j = 0; j < cols_out; j++) {
                    float *o = out + ((img * h + 2 * ty + i) * w + 2 * tx + j) * k + ko;
                    const __m512 value = accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, o), y[j]) : y[j];
                    _mm512_mask_storeu_ps(o, lanes, value);
                }
            }
        }
    }
}
#endif

int sdk_winograd_input(const void *src, int src_bf16, int64_t h, int64_t w, int64_t c, int64_t tile0, int64_t count,
                       uint16_t *dst, int64_t row0, int64_t rows) {
#ifdef SDK_X86
    if (!sdk_has_avx512_bf16()) return -1;
    input512(src, src_bf16, h, w, c, (h + 1) / 2, (w + 1) / 2, tile0, count, dst, row0, rows);
    return 0;
#else
    (void)src; (void)src_bf16; (void)h; (void)w; (void)c; (void)tile0; (void)count; (void)dst; (void)row0; (void)rows;
    return -1;
#endif
}

int sdk_winograd_output(const float *m, int64_t rows, int64_t row0, int64_t h, int64_t w, int64_t k, int64_t tile0,
                        int64_t count, const float *bias, int accumulate, float *out) {
#ifdef SDK_X86
    if (!sdk_has_avx512_bf16()) return -1;
    output512(m, rows, row0, h, w, k, (h + 1) / 2, (w + 1) / 2, tile0, count, bias, accumulate, out);
    return 0;
#else
    (void)m; (void)rows; (void)row0; (void)h; (void)w; (void)k; (void)tile0; (void)count; (void)bias; (void)accumulate; (void)out;
    return -1;
#endif
}

int sdk_winograd_weights(const float *g, int64_t k, int64_t c, int64_t ci0, int64_t ci1, uint16_t *u) {
#ifdef SDK_X86
    if (!sdk_has_avx512_bf16()) return -1;
    weights512(g, k, c, ci0, ci1, u);
    return 0;
#else
    (void)g; (void)k; (void)c; (void)ci0; (void)ci1; (void)u;
    return -1;
#endif
}
