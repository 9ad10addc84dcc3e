/* ht_vmath.h (private to c_runtime): e^x on vectors, for the kernels whose time went to
 * calling expf once per element (log_softmax's forward and backward took a twentieth of the
 * MNIST MLP's training step at batch 64). */
#ifndef HT_VMATH_H
#define HT_VMATH_H

#include "ht_vec.h"

/* a where `mask` is set, else b, per lane. */
HT_INLINE ht_vf ht_vselect(ht_vi mask, ht_vf a, ht_vf b) {
    return (ht_vf)((mask & (ht_vi)a) | (~mask & (ht_vi)b));
}

/* Lane lists splitting a vector in halves, and putting two halves together. */
#if HT_VL == 16
#define HT_LOW_HALF 0, 1, 2, 3, 4, 5, 6, 7
#define HT_HIGH_HALF 8, 9, 10, 11, 12, 13, 14, 15
#elif HT_VL == 8
#define HT_LOW_HALF 0, 1, 2, 3
#define HT_HIGH_HALF 4, 5, 6, 7
#else
#define HT_LOW_HALF 0, 1
#define HT_HIGH_HALF 2, 3
#endif

typedef float ht_vf_half __attribute__((vector_size(HT_VEC_BYTES / 2)));
typedef double ht_vd __attribute__((vector_size(HT_VEC_BYTES))); /* HT_VL / 2 doubles */
typedef int64_t ht_vd_bits __attribute__((vector_size(HT_VEC_BYTES)));

/* e^x in double for x in [-104, 89] (no NaN), within 1e-13 of it: x = n ln2 + r with n an
 * integer and |r| <= ln2/2 (ln2 in two parts, n * LN2_HI exact), e^r = 1 + r + r^2/2 +
 * r^3 Q(r) with Q's coefficients fitted for the relative error of e^r over that interval
 * (3e-14), times 2^n. */
HT_INLINE ht_vd ht_vexp_double(ht_vd x) {
    /* Adding 1.5 * 2^52 rounds to an integer, left in the low bits of the sum's mantissa. */
    const ht_vd shifted = x * 1.4426950408889634 + 6755399441055744.0;
    const ht_vd n = shifted - 6755399441055744.0;
    ht_vd r = x - n * 0.6931471803691238;   /* LN2_HI: 32 bits */
    r = r - n * 1.9082149292705877e-10;     /* LN2_LO */
    ht_vd q = r * 2.7529669151088947e-06 + 2.4872607805302018e-05;
    q = q * r + 1.9841422705082126e-04;
    q = q * r + 1.3888831085949098e-03;
    q = q * r + 8.333333213274811e-03;
    q = q * r + 4.1666666812348374e-02;
    q = q * r + 1.6666666666887173e-01;
    const ht_vd e_r = ((q * r + 0.5) * (r * r) + r) + 1.0;
    const ht_vd_bits scale = ((ht_vd_bits)shifted + 1023) << 52; /* 2^n */
    return e_r * (ht_vd)scale;
}

/* e^x in each lane, as expf gives it: computed in double and rounded once, the correctly
 * rounded float but where e^x is within 1e-13 of halfway between two floats (none of the
 * 8.4 million values of tests/test_vector_exp.py's comb); expf's special values: NaN stays
 * NaN, +inf and x above 88.72 give +inf, -inf and x below -103.97 give +0, results below
 * FLT_MIN rounded once. */
HT_INLINE ht_vf ht_vexp(ht_vf x) {
    const ht_vf lowest = ht_vsplat(-104.0f), highest = ht_vsplat(89.0f); /* past both ends */
    const ht_vi nan = x != x;
    const ht_vf xc = ht_vselect((x < lowest) | nan, lowest, ht_vselect(x > highest, highest, x));
    const ht_vf_half low = __builtin_shufflevector(xc, xc, HT_LOW_HALF);
    const ht_vf_half high = __builtin_shufflevector(xc, xc, HT_HIGH_HALF);
    const ht_vf_half e_low = __builtin_convertvector(
        ht_vexp_double(__builtin_convertvector(low, ht_vd)), ht_vf_half);
    const ht_vf_half e_high = __builtin_convertvector(
        ht_vexp_double(__builtin_convertvector(high, ht_vd)), ht_vf_half);
    return ht_vselect(nan, x, __builtin_shufflevector(e_low, e_high, HT_LOW_HALF, HT_HIGH_HALF));
}

/* y[i] = EXPR for i < n, EXPR a vector expression of v = x[i..]: whole vectors, then the
 * lanes of the last one (the others hold zeros in v and are not stored). */
#define HT_VMAP(y, x, n, v, ...)                                                             \
    do {                                                                                     \
        int64_t at_ = 0;                                                                     \
        for (; at_ + HT_VL <= (n); at_ += HT_VL) {                                           \
            const ht_vf v = ht_vload((x) + at_);                                             \
            ht_vstore((y) + at_, (__VA_ARGS__));                                             \
        }                                                                                    \
        if (at_ < (n)) {                                                                     \
            const ht_vf v = ht_vload_first((x) + at_, (n)-at_);                              \
            ht_vstore_first((y) + at_, (__VA_ARGS__), (n)-at_);                              \
        }                                                                                    \
    } while (0)

#endif
