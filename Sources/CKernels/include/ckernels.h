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

/// Layer norm over each of `rows` rows of `c` floats (mean and variance in double); g and b may be NULL.
int sdk_layer_norm_rows(const float *x, float *y, int64_t rows, int64_t c, const float *g, const float *b, float eps);

#include "sdk_attention.h"

#endif
