/* ht_simd.h (private to c_runtime): loops written so that the compiler vectorises them, for
 * the elementwise kernels. (The matrix products and SGD write vectors out: ht_vec.h.) */
#ifndef HT_SIMD_H
#define HT_SIMD_H

#include <stdint.h>

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
