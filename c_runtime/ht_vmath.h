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

/* e^x in each lane, within an ulp or two of expf (tests/test_vector_exp.py measures it
 * against float64), with expf's special values: NaN stays NaN, +inf and x above 88.72 give
 * +inf, -inf and x below -103.97 give +0, and results below FLT_MIN are rounded once.
 *
 * x = n ln2 + r with n an integer and |r| <= ln2/2 (ln2 in two parts: n * LN2_HI is exact);
 * e^r = 1 + r + r^2 Q(r), Q's coefficients fitted for the relative error of e^r over that
 * interval (4e-9, well under a float's 6e-8); 2^n is applied as two powers of two, each a
 * normal float, so that the one rounding is the last multiplication's. */
HT_INLINE ht_vf ht_vexp(ht_vf x) {
    const ht_vf lowest = ht_vsplat(-104.0f), highest = ht_vsplat(89.0f); /* past both ends */
    const ht_vf xc = ht_vselect(x < lowest, lowest, ht_vselect(x > highest, highest, x));
    const ht_vf round = ht_vsplat(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
    const ht_vf n = ht_vfma(xc, ht_vsplat(1.44269504088896341f), round) - round;
    ht_vf r = ht_vfma(n, ht_vsplat(-0.693145751953125f), xc);  /* LN2_HI: 16 bits */
    r = ht_vfma(n, ht_vsplat(-1.428606765330187045e-6f), r);  /* LN2_LO */
    ht_vf q = ht_vsplat(1.387228025123477e-3f);
    q = ht_vfma(q, r, ht_vsplat(8.36869329214096e-3f));
    q = ht_vfma(q, r, ht_vsplat(4.1667357087135315e-2f));
    q = ht_vfma(q, r, ht_vsplat(1.666652113199234e-1f));
    q = ht_vfma(q, r, ht_vsplat(4.999999701976776e-1f));
    const ht_vf e_r = ht_vfma(r * r, q, r) + ht_vsplat(1.0f);
    const ht_vi whole = __builtin_convertvector(n, ht_vi), half = whole >> 1;
    const ht_vf first = (ht_vf)((half + 127) << 23), second = (ht_vf)((whole - half + 127) << 23);
    return ht_vselect(x != x, x, e_r * first * second);
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
