/* ht_vec.h (private to c_runtime): one vector type for every CPU. The kernels are written
 * once with GCC/Clang vector extensions on ht_vf, HT_VL floats wide: 16 with AVX-512, 8 with
 * AVX/AVX2, 4 with NEON, SSE2 or no vector unit at all (the compiler then lowers the
 * operations to scalar code). A handful of shims below map to an instruction where the
 * generic form would be slow or round differently: the fused multiply-add, partial loads
 * and stores, and pinning a value to a register. */
#ifndef HT_VEC_H
#define HT_VEC_H

#include <math.h>
#include <stdint.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#define HT_VEC_BYTES 64
#define HT_VEC_REGS 32
#define HT_VEC_ISA "avx512"
#elif defined(__AVX__)
#include <immintrin.h>
#define HT_VEC_BYTES 32
#define HT_VEC_REGS 16
#ifdef __AVX2__
#define HT_VEC_ISA "avx2"
#else
#define HT_VEC_ISA "avx"
#endif
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#define HT_VEC_BYTES 16
#define HT_VEC_REGS 32
#define HT_VEC_ISA "neon"
#elif defined(__SSE2__)
#define HT_VEC_BYTES 16
#define HT_VEC_REGS 16
#define HT_VEC_ISA "sse2"
#else
#define HT_VEC_BYTES 16
#define HT_VEC_REGS 16
#define HT_VEC_ISA "generic"
#endif

#define HT_VL (HT_VEC_BYTES / 4) /* floats per vector */

/* Whether a*b+c is computed with one rounding, in the scalar rule (fmaf) and in vectors
 * (ht_vfma) alike, so that the two give the same bits. */
#if defined(FP_FAST_FMAF) || defined(__FMA__) || defined(__aarch64__)
#define HT_HAS_FMA 1
#else
#define HT_HAS_FMA 0
#endif

#define HT_INLINE static inline __attribute__((always_inline))

/* Pragmas as macros, for use inside macros too. */
#define HT_PRAGMA(x) _Pragma(#x)
#define HT_UNROLL(n) HT_PRAGMA(GCC unroll n)

typedef float ht_vf __attribute__((vector_size(HT_VEC_BYTES)));
typedef int32_t ht_vi __attribute__((vector_size(HT_VEC_BYTES)));
/* The same vector at any float address: loads and stores through it need no alignment. */
typedef float ht_vf_unaligned __attribute__((vector_size(HT_VEC_BYTES), aligned(4), may_alias));

HT_INLINE ht_vf ht_vload(const float *p) { return *(const ht_vf_unaligned *)p; }
HT_INLINE void ht_vstore(float *p, ht_vf v) { *(ht_vf_unaligned *)p = v; }
#if HT_VL == 16
#define HT_LANES_OF(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
#elif HT_VL == 8
#define HT_LANES_OF(x) x, x, x, x, x, x, x, x
#else
#define HT_LANES_OF(x) x, x, x, x
#endif
/* x in every lane. (Not `(ht_vf){0} + x`: that is an addition, which turns -0.0 into +0.0.) */
HT_INLINE ht_vf ht_vsplat(float x) { return (ht_vf){HT_LANES_OF(x)}; }
HT_INLINE ht_vf ht_vzero(void) { return (ht_vf){0}; }

/* a*b + c rounded once when HT_HAS_FMA (as fmaf), else rounded twice (as a*b + c). */
HT_INLINE ht_vf ht_vfma(ht_vf a, ht_vf b, ht_vf c) {
#if HT_VEC_BYTES == 64
    return _mm512_fmadd_ps(a, b, c);
#elif HT_VEC_BYTES == 32 && defined(__FMA__)
    return _mm256_fmadd_ps(a, b, c);
#elif defined(__aarch64__) && defined(__ARM_NEON)
    return (ht_vf)vfmaq_f32((float32x4_t)c, (float32x4_t)a, (float32x4_t)b);
#elif HT_HAS_FMA
    ht_vf r;
    for (int l = 0; l < HT_VL; l++) r[l] = fmaf(a[l], b[l], c[l]);
    return r;
#else
    return a * b + c;
#endif
}

/* The HT_VL bytes at p as floats (exact: every byte is a float). */
HT_INLINE ht_vf ht_vfrom_bytes(const uint8_t *p) {
#if HT_VEC_BYTES == 64
    const __m128i bytes = _mm_loadu_si128((const __m128i *)(const void *)p);
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes));
#elif HT_VEC_BYTES == 32 && defined(__AVX2__)
    const __m128i bytes = _mm_loadl_epi64((const __m128i *)(const void *)p);
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes));
#else
    ht_vf v;
    for (int l = 0; l < HT_VL; l++) v[l] = (float)p[l];
    return v;
#endif
}

/* A vector whose lanes [0, count) are all ones and the others zeros. */
HT_INLINE ht_vi ht_vfirst_lanes(int64_t count) {
    static const int32_t lane[16] __attribute__((aligned(64))) = {0, 1, 2, 3, 4, 5, 6, 7,
                                                                   8, 9, 10, 11, 12, 13, 14, 15};
    return *(const ht_vi *)(const void *)lane < (ht_vi){0} + (int32_t)count;
}

/* Lanes [0, count) from p and zeros after them; count in [0, HT_VL]. For the tails of rows:
 * nothing past p + count is read. */
HT_INLINE ht_vf ht_vload_first(const float *p, int64_t count) {
#if HT_VEC_BYTES == 64
    return _mm512_maskz_loadu_ps((__mmask16)((1u << count) - 1u), p);
#elif HT_VEC_BYTES == 32 && defined(__AVX2__)
    return _mm256_maskload_ps(p, (__m256i)ht_vfirst_lanes(count));
#else
    ht_vf v = ht_vzero();
    for (int l = 0; l < HT_VL; l++)
        if (l < count) v[l] = p[l];
    return v;
#endif
}

/* Stores lanes [0, count) of v at p; count in [0, HT_VL]. */
HT_INLINE void ht_vstore_first(float *p, ht_vf v, int64_t count) {
#if HT_VEC_BYTES == 64
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << count) - 1u), v);
#else
    for (int l = 0; l < HT_VL; l++)
        if (l < count) p[l] = v[l];
#endif
}

/* v with lanes [count, HT_VL) set to +0. */
HT_INLINE ht_vf ht_vkeep_first(ht_vf v, int64_t count) {
    return (ht_vf)((ht_vi)v & ht_vfirst_lanes(count));
}

/* Whether any lane of v is a NaN. */
HT_INLINE int ht_vany_nan(ht_vf v) {
    ht_vi nan = v != v;
    int32_t any = 0;
    for (int l = 0; l < HT_VL; l++) any |= nan[l];
    return any != 0;
}

/* Keeps v in a register: without it gcc may fold a load into every instruction that uses
 * the value, and a tile that reuses its loads becomes load-bound. */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__SSE2__)
#define HT_VPIN(v) __asm__("" : "+v"(v))
#elif defined(__aarch64__)
#define HT_VPIN(v) __asm__("" : "+w"(v))
#else
#define HT_VPIN(v) ((void)0)
#endif

/* ---- horizontal sums ----
 * Each level takes two vectors holding the partial sums of some quantities, `2 * B` lanes per
 * quantity, and gives one vector holding B per quantity (the first vector's quantities,
 * then the second's): partial l is added to partial l + B. The block shuffles at B >= 4 move
 * whole 128-bit lanes, the cheap kind on every vector unit. */

#if HT_VL == 16
#define HT_HALVES_LO_0 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define HT_HALVES_HI_0 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define HT_HALVES_LO_1 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27
#define HT_HALVES_HI_1 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31
#define HT_HALVES_LO_2 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29
#define HT_HALVES_HI_2 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31
#define HT_HALVES_LO_3 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30
#define HT_HALVES_HI_3 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31
#elif HT_VL == 8
#define HT_HALVES_LO_0 0, 1, 2, 3, 8, 9, 10, 11
#define HT_HALVES_HI_0 4, 5, 6, 7, 12, 13, 14, 15
#define HT_HALVES_LO_1 0, 1, 4, 5, 8, 9, 12, 13
#define HT_HALVES_HI_1 2, 3, 6, 7, 10, 11, 14, 15
#define HT_HALVES_LO_2 0, 2, 4, 6, 8, 10, 12, 14
#define HT_HALVES_HI_2 1, 3, 5, 7, 9, 11, 13, 15
#elif HT_VL == 4
#define HT_HALVES_LO_0 0, 1, 4, 5
#define HT_HALVES_HI_0 2, 3, 6, 7
#define HT_HALVES_LO_1 0, 2, 4, 6
#define HT_HALVES_HI_1 1, 3, 5, 7
#endif

#if defined(__clang__) || __GNUC__ >= 12
#define HT_SHUFFLE2(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define HT_SHUFFLE2(a, b, ...) __builtin_shuffle(a, b, (ht_vi){__VA_ARGS__})
#endif

/* One level of the tree (level 0 has B = HT_VL / 2, each next one half the B before). */
#define HT_HALVES(level, a, b) \
    (HT_SHUFFLE2(a, b, HT_HALVES_LO_##level) + HT_SHUFFLE2(a, b, HT_HALVES_HI_##level))

/* Lane q of the result is the sum of the lanes of v[q] (q < HT_VL). Each total is the same
 * balanced tree of its own lanes (lane l with l + HT_VL/2, then with l + HT_VL/4, ...),
 * whatever the other vectors hold: sums of the same vector are equal, bit for bit, wherever
 * taken. */
HT_INLINE ht_vf ht_vsum_each(ht_vf v[HT_VL]) {
    HT_UNROLL(8)
    for (int i = 0; i < HT_VL / 2; i++) v[i] = HT_HALVES(0, v[2 * i], v[2 * i + 1]);
    HT_UNROLL(4)
    for (int i = 0; i < HT_VL / 4; i++) v[i] = HT_HALVES(1, v[2 * i], v[2 * i + 1]);
#if HT_VL >= 8
    HT_UNROLL(2)
    for (int i = 0; i < HT_VL / 8; i++) v[i] = HT_HALVES(2, v[2 * i], v[2 * i + 1]);
#endif
#if HT_VL >= 16
    v[0] = HT_HALVES(3, v[0], v[1]);
#endif
    return v[0];
}

/* out[q] = sum of the lanes of v[q], for q < count (count a constant in the caller). */
HT_INLINE void ht_vsum_lanes(float *out, const ht_vf *v, const int count) {
    HT_UNROLL(4)
    for (int g = 0; g < count; g += HT_VL) {
        ht_vf group[HT_VL];
        HT_UNROLL(16)
        for (int q = 0; q < HT_VL; q++) group[q] = g + q < count ? v[g + q] : ht_vzero();
        ht_vf sums = ht_vsum_each(group);
        if (count - g >= HT_VL) {
            ht_vstore(out + g, sums);
        } else {
            HT_UNROLL(16)
            for (int q = 0; q < count - g; q++) out[g + q] = sums[q];
        }
    }
}

#endif
