#include "ckernels.h"

#include <math.h>

#include "simd_math.h"

int sdk_has_avx512(void) {
#ifdef SDK_X86
    static int cached = -1;
    if (cached < 0) cached = __builtin_cpu_supports("avx512f") ? 1 : 0;
    return cached;
#else
    return 0;
#endif
}

#ifdef SDK_X86
/* erf by Abramowitz & Stegun 7.1.26, as VectorMath.erf. */
AVX512 static inline __m512 erf512(__m512 x) {
    const __m512 ax = _mm512_abs_ps(x);
    const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(ax, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.0f)));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(ax, ax)));
    const __m512 y = _mm512_fnmadd_ps(_mm512_mul_ps(p, t), e, _mm512_set1_ps(1.0f));
    const __mmask16 negative = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_sub_ps(y, negative, _mm512_setzero_ps(), y);
}

AVX512 static inline __m512 activation512(__m512 x, int kind) {
    const __m512 one = _mm512_set1_ps(1.0f);
    switch (kind) {
    case SDK_SILU:
        return _mm512_div_ps(x, _mm512_add_ps(exp512(_mm512_sub_ps(_mm512_setzero_ps(), x)), one));
    case SDK_QUICK_GELU:
        return _mm512_div_ps(x, _mm512_add_ps(exp512(_mm512_mul_ps(x, _mm512_set1_ps(-1.702f))), one));
    case SDK_GELU:
        return _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)),
                             _mm512_add_ps(erf512(_mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f))), one));
    case SDK_GELU_TANH: {
        const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
        const __m512 u = _mm512_mul_ps(_mm512_fmadd_ps(x3, _mm512_set1_ps(0.044715f), x), _mm512_set1_ps(0.7978845608028654f));
        const __m512 th = _mm512_sub_ps(_mm512_set1_ps(2.0f),
                                        _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(exp512(_mm512_add_ps(u, u)), one)));
        return _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)), th);
    }
    default:
        return x;
    }
}

AVX512 static float exp_minus_max512(float *p, int64_t n) {
    __m512 vm = _mm512_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(p + i));
    if (i < n) vm = _mm512_max_ps(vm, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), (__mmask16)((1u << (n - i)) - 1), p + i));
    const float m = _mm512_reduce_max_ps(vm);
    if (m == -INFINITY) {
        for (int64_t j = 0; j < n; j++) p[j] = 0;
        return 0;
    }
    const __m512 vmax = _mm512_set1_ps(m);
    __m512 vs = _mm512_setzero_ps();
    for (i = 0; i + 16 <= n; i += 16) {
        const __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(p + i), vmax));
        _mm512_storeu_ps(p + i, e);
        vs = _mm512_add_ps(vs, e);
    }
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        const __m512 e = exp512(_mm512_sub_ps(_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, p + i), vmax));
        _mm512_mask_storeu_ps(p + i, k, e);
        vs = _mm512_add_ps(vs, _mm512_maskz_mov_ps(k, e));
    }
    return _mm512_reduce_add_ps(vs);
}

AVX512 static void activation_row512(float *p, int64_t n, int kind) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(p + i, activation512(_mm512_loadu_ps(p + i), kind));
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(p + i, k, activation512(_mm512_maskz_loadu_ps(k, p + i), kind));
    }
}

/* GEGLU rows: out[r][j] = h[r][j] * gelu(h[r][n + j]), as activation_row512 then a multiply would give. */
AVX512 static void geglu_rows512(const float *h, int64_t rows, int64_t n, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const float *a = h + r * 2 * n, *g = a + n;
        float *o = out + r * n;
        for (int64_t j = 0; j < n; j += 16) {
            const __mmask16 k = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
            const __m512 gate = activation512(_mm512_maskz_loadu_ps(k, g + j), SDK_GELU);
            _mm512_mask_storeu_ps(o + j, k, _mm512_mul_ps(gate, _mm512_maskz_loadu_ps(k, a + j)));
        }
    }
}
#endif

int sdk_geglu_rows(const float *h, int64_t rows, int64_t n, float *out) {
#ifdef SDK_X86
    if (sdk_has_avx512()) { geglu_rows512(h, rows, n, out); return 1; }
#endif
    (void)h; (void)rows; (void)n; (void)out;
    return 0;
}

/* Portable fallbacks (callers normally keep their own SIMD code where AVX-512 is missing). */
float sdk_exp_minus_max(float *p, int64_t n) {
#ifdef SDK_X86
    if (sdk_has_avx512()) return exp_minus_max512(p, n);
#endif
    float m = -INFINITY;
    for (int64_t j = 0; j < n; j++) m = p[j] > m ? p[j] : m;
    if (m == -INFINITY) {
        for (int64_t j = 0; j < n; j++) p[j] = 0;
        return 0;
    }
    float s = 0;
    for (int64_t j = 0; j < n; j++) { p[j] = expf(p[j] - m); s += p[j]; }
    return s;
}

void sdk_activation(float *p, int64_t n, int kind) {
#ifdef SDK_X86
    if (sdk_has_avx512()) { activation_row512(p, n, kind); return; }
#endif
    for (int64_t j = 0; j < n; j++) {
        const float x = p[j];
        switch (kind) {
        case SDK_SILU: p[j] = x / (expf(-x) + 1); break;
        case SDK_QUICK_GELU: p[j] = x / (expf(x * -1.702f) + 1); break;
        case SDK_GELU: p[j] = 0.5f * x * (1 + erff(x * 0.70710678118654752f)); break;
        case SDK_GELU_TANH: p[j] = 0.5f * x * (1 + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x))); break;
        default: break;
        }
    }
}

/* ---- bf16 ---- */

/* From CPUID directly (leaf 7): older compilers' __builtin_cpu_supports does not know these names. */
#ifdef SDK_X86
#include <cpuid.h>
static unsigned cpuid7(unsigned subleaf, int reg) {
    unsigned r[4] = {0, 0, 0, 0};
    if (!__get_cpuid_count(7, subleaf, &r[0], &r[1], &r[2], &r[3])) return 0;
    return r[reg];
}
#endif

int sdk_has_avx512_bf16(void) {
#ifdef SDK_X86
    static int cached = -1;
    /* avx512f also says the OS saves the AVX-512 state; AVX512_BF16 is leaf 7.1 EAX bit 5; the kernels also use BW. */
    if (cached < 0)
        cached = (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && (cpuid7(1, 0) >> 5 & 1)) ? 1 : 0;
    return cached;
#else
    return 0;
#endif
}

int sdk_has_amx_bf16(void) {
#ifdef SDK_X86
    static int cached = -1;
    /* AMX-BF16 is leaf 7.0 EDX bit 22 (oneDNN asks the kernel for the tile state itself). */
    if (cached < 0) cached = (cpuid7(0, 3) >> 22 & 1) ? 1 : 0;
    return cached;
#else
    return 0;
#endif
}

void sdk_f32_to_bf16_portable(const float *src, uint16_t *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        __builtin_memcpy(&u, &src[i], 4);
        if ((u & 0x7fffffffu) > 0x7f800000u) {
            dst[i] = (uint16_t)((u >> 16) | 0x40);  /* NaN: keep the sign, make it quiet */
        } else {
            dst[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
        }
    }
}

#ifdef SDK_X86
/* Two 16-float vectors per instruction (VCVTNE2PS2BF16), the remainder through a masked single. */
__attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl")))
static void f32_to_bf16_512(const float *src, uint16_t *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
        _mm512_storeu_si512((void *)(dst + i), (__m512i)v);
    }
    for (; i < n; i += 16) {
        const int64_t left = n - i < 16 ? n - i : 16;
        const __mmask16 k = (__mmask16)((1u << left) - 1);
        const __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, src + i));
        _mm256_mask_storeu_epi16((void *)(dst + i), k, (__m256i)v);
    }
}
#endif

void sdk_f32_to_bf16(const float *src, uint16_t *dst, int64_t n) {
#ifdef SDK_X86
    if (sdk_has_avx512_bf16()) { f32_to_bf16_512(src, dst, n); return; }
#endif
    sdk_f32_to_bf16_portable(src, dst, n);
}

int sdk_has_f16c(void) {
#ifdef SDK_X86
    static int cached = -1;
    if (cached < 0) cached = (__builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx")) ? 1 : 0;
    return cached;
#else
    return 0;
#endif
}

#ifdef SDK_X86
/* VCVTPH2PS: exact for every half, subnormals, infinities and NaN included (it ignores MXCSR's DAZ). */
__attribute__((target("avx,f16c")))
static void f16_to_f32_f16c(const void *src, float *dst, int64_t n) {
    const unsigned char *s = (const unsigned char *)src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + 2 * i))));
    }
    for (; i < n; i++) {
        uint16_t h;
        __builtin_memcpy(&h, s + 2 * i, 2);
        dst[i] = _cvtsh_ss(h);
    }
}
#endif

int sdk_f16_to_f32(const void *src, float *dst, int64_t n) {
#ifdef SDK_X86
    if (sdk_has_f16c()) { f16_to_f32_f16c(src, dst, n); return 1; }
#endif
    (void)src; (void)dst; (void)n;
    return 0;
}
