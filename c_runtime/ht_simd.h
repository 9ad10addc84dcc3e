/* ht_simd.h (private to c_runtime): vectorisation helpers shared by the kernel files. */
#ifndef HT_SIMD_H
#define HT_SIMD_H

#include <stdint.h>

#ifdef __AVX512F__
#include <immintrin.h>

#define HT_ALL_LANES ((__mmask16)0xFFFF)

/* Lanes [0, count) of a 16-float vector; all 16 when count >= 16. */
static inline __mmask16 ht_lane_mask(int64_t count) {
    if (count <= 0) return 0;
    return count >= 16 ? HT_ALL_LANES : (__mmask16)((1u << count) - 1u);
}

/* Loads/stores the lanes of `mask` (missing lanes read as 0). With a constant full mask these
 * become plain loads/stores, which gcc can fold into FMAs as memory operands. */
static inline __m512 ht_load16(const float *p, __mmask16 mask) {
    return mask == HT_ALL_LANES ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(mask, p);
}
static inline void ht_store16(float *p, __m512 v, __mmask16 mask) {
    if (mask == HT_ALL_LANES)
        _mm512_storeu_ps(p, v);
    else
        _mm512_mask_storeu_ps(p, mask, v);
}
#endif

#if defined(__clang__)
#define HT_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define HT_IVDEP _Pragma("GCC ivdep")
#else
#define HT_IVDEP
#endif

/* for (int64_t i = 0; i < n; i++) { BODY }, written as blocks of 16 whose iterations are
 * independent: gcc -O2's "very cheap" cost model only vectorises loops of known trip count.
 * BODY may write the very array it reads (in place) but arrays must not partially overlap. */
#define HT_FOR(i, n, ...)                                                  \
    do {                                                                   \
        int64_t ht_block_ = 0;                                             \
        for (; ht_block_ + 16 <= (n); ht_block_ += 16) {                   \
            HT_IVDEP                                                       \
            for (int ht_lane_ = 0; ht_lane_ < 16; ht_lane_++) {            \
                int64_t i = ht_block_ + ht_lane_;                          \
                __VA_ARGS__;                                               \
            }                                                              \
        }                                                                  \
        for (int64_t i = ht_block_; i < (n); i++) {                        \
            __VA_ARGS__;                                                   \
        }                                                                  \
    } while (0)

#endif
