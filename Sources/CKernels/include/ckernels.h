#ifndef SD_CKERNELS_H
#define SD_CKERNELS_H

#include <stdint.h>

/// Element-wise kernels written with AVX-512 intrinsics behind a runtime CPU check: Swift builds for the
/// baseline x86-64 (SSE2), so its SIMD types run 4 lanes without FMA; these run 16 with FMA on CPUs that
/// have AVX-512F, with no compiler flags (function-level target attributes).

/// 1 when the AVX-512 kernels below can run on this CPU, else 0 (then the callers use their portable code).
int sdk_has_avx512(void);

/// exp(x - max(x)) over `n` floats in place; returns their sum (0, leaving zeros, for a row of -inf).
float sdk_exp_minus_max(float *p, int64_t n);

/// Activation codes of sdk_activation.
enum { SDK_SILU = 1, SDK_QUICK_GELU = 2, SDK_GELU = 3, SDK_GELU_TANH = 4 };

/// The activation `kind` applied in place to `n` floats.
void sdk_activation(float *p, int64_t n, int kind);

/* Normalisation kernels (norms.c). Each returns 1 when it ran, 0 on a CPU without AVX-512 (then the caller
   runs its portable code). */

/// Group norm statistics: for NHWC pixels [from, to) of `c` channels, each channel's sum (or, with `squared`,
/// sum of squared deviations from centre[channel]) into out[channel], in float runs of 32 pixels.
int sdk_channel_sums(const float *x, int64_t c, int64_t from, int64_t to, const float *centre, int squared, double *out);

/// y = x * a + b per channel for `rows` rows of `c` channels, then the activation `kind` (0: none).
int sdk_affine_rows(const float *x, float *y, int64_t rows, int64_t c, const float *a, const float *b, int kind);

/// GEGLU over `rows` rows of `2n` floats: out[r][j] = h[r][j] * gelu(h[r][n + j]) (erf GELU, as sdk_activation's).
/// Returns 0 without writing when the CPU lacks AVX-512 (the caller's loop does it then).
int sdk_geglu_rows(const float *h, int64_t rows, int64_t n, float *out);

/// Layer norm over each of `rows` rows of `c` floats (mean and variance in double); g and b may be NULL.
int sdk_layer_norm_rows(const float *x, float *y, int64_t rows, int64_t c, const float *g, const float *b, float eps);

#include "sdk_attention.h"

/// 1 when this CPU converts and multiplies bf16 natively: AVX512_BF16 with AVX512_BW (Cooper Lake, Zen 4 and
/// later), else 0. The bf16 conversion and attention kernels need it.
int sdk_has_avx512_bf16(void);

/// 1 when this CPU has AMX with bf16 tiles (Sapphire Rapids and later), else 0.
int sdk_has_amx_bf16(void);

/// `n` floats to bf16 (the upper 16 bits of each float's pattern), rounding to nearest, ties to even,
/// NaN kept NaN (quiet). With AVX512_BF16 the hardware instruction does it, which also flushes
/// subnormal inputs to zero; the portable loop keeps them (they differ only below 1.2e-38).
void sdk_f32_to_bf16(const float *src, uint16_t *dst, int64_t n);

/// The portable loop of sdk_f32_to_bf16, whatever the CPU (tests compare the two).
void sdk_f32_to_bf16_portable(const float *src, uint16_t *dst, int64_t n);

/// 1 when this CPU has F16C (with AVX), else 0.
int sdk_has_f16c(void);

/// `n` IEEE halves at `src` (any alignment, little-endian, as in a file mapping) widened to floats exactly,
/// with F16C. Returns 0 without touching anything when the CPU lacks it (the caller's loop does it then).
int sdk_f16_to_f32(const void *src, float *dst, int64_t n);

/// Winograd F(2x2, 3x3) for a 3x3 convolution with stride 1 and padding 1 (winograd.c says how).
/// The weights `g` (fp32 `[3][3][c][k]`, HWIO) of input channels `ci0 ..< ci1` transformed into `u`, bf16
/// `[16][c][k]` (rounded to nearest even). Returns 0, or -1 (doing nothing) where sdk_has_avx512_bf16() is 0.
int sdk_winograd_weights(const float *g, int64_t k, int64_t c, int64_t ci0, int64_t ci1, uint16_t *u);

/// Input tiles `tile0 ..< tile0 + count` of an NHWC image batch (`h` x `w` x `c`, fp32, or bf16 when `src_bf16`)
/// transformed into bf16 `dst` `[16][rows][c]` at rows `row0 ...`. Returns 0, or -1 (doing nothing) where
/// sdk_has_avx512_bf16() is 0.
int sdk_winograd_input(const void *src, int src_bf16, int64_t h, int64_t w, int64_t c, int64_t tile0, int64_t count,
                       uint16_t *dst, int64_t row0, int64_t rows);

/// The products `m` (fp32 `[16][rows][k]`, rows `row0 ...` for tiles `tile0 ..< tile0 + count`) transformed into
/// the NHWC fp32 output (`h` x `w` x `k`), plus `bias` (or NULL); added to what `out` holds when `accumulate`.
/// Returns 0, or -1 (doing nothing) where sdk_has_avx512_bf16() is 0.
int sdk_winograd_output(const float *m, int64_t rows, int64_t row0, int64_t h, int64_t w, int64_t k, int64_t tile0,
                        int64_t count, const float *bias, int accumulate, float *out);

#endif
