/* Vector math shared by the CKernels sources (internal: not part of the public headers). */
#ifndef SDK_SIMD_MATH_H
#define SDK_SIMD_MATH_H

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <math.h>
#define SDK_X86 1
#define AVX512 __attribute__((target("avx512f")))

/* e^r for x = n ln2 + r, |r| <= ln2/2 (r from x and the integer-valued n): Cephes' degree-6 polynomial with
   fused multiply-adds. Both exponentials below scale it by 2^n their own way. */
AVX512 static inline __attribute__((always_inline)) __m512 exp_reduced512(__m512 xc, __m512 n) {
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    const __m512 er = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    return er;
}

/* e^x as the Swift VectorMath.exp computes it (x = n ln2 + r, Cephes' degree-6 polynomial, 2^n in the
   exponent bits), with fused multiply-adds; NaN stays NaN, below -87.3 is 0, above 88.7 is +inf. */
AVX512 static inline __m512 exp512(__m512 x) {
    const __m512 hi = _mm512_set1_ps(88.72283f), lo = _mm512_set1_ps(-87.33654f);
    const __mmask16 over = _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ), under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    __m512 xc = _mm512_mask_mov_ps(x, over, hi);
    xc = _mm512_mask_mov_ps(xc, under, lo);
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    const __m512 t = _mm512_fmadd_ps(xc, _mm512_set1_ps(1.442695040888963f), magic);
    const __m512 n = _mm512_sub_ps(t, magic);
    const __m512 er = exp_reduced512(xc, n);
    const __m512i ni = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(0x4B400000));
    const __m512 pow2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(ni, _mm512_set1_epi32(127)), 23));
    __m512 result = _mm512_mul_ps(er, pow2);
    result = _mm512_mask_mov_ps(result, under, _mm512_setzero_ps());
    return _mm512_mask_mov_ps(result, over, _mm512_set1_ps(INFINITY));
}
#endif

#endif
