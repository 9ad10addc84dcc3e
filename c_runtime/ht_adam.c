/* ht_adam.c: torch.optim.Adam and AdamW (torch/optim/adam.py, _single_tensor_adam), written
 * out on ht_vec.h's vectors in torch's order of operations:
 *   g = -g if maximize
 *   w *= 1 - lr*weight_decay  (AdamW)   |   g += weight_decay * w  (Adam)   (if weight_decay)
 *   exp_avg.lerp_(g, 1 - beta1);  exp_avg_sq = exp_avg_sq * beta2 + (1 - beta2) * g * g
 *   max_exp_avg_sq = maximum(max_exp_avg_sq, exp_avg_sq)                    (if amsgrad)
 *   denom = sqrt(exp_avg_sq or max_exp_avg_sq) / sqrt(1 - beta2^step) + eps
 *   w += (-lr / (1 - beta1^step)) * exp_avg / denom
 * The scalars are computed in double, as Python does, and rounded to float where torch hands
 * them to a float kernel; multiply-adds fuse where torch's vectorised kernels fuse them. */
#include "ht_kernels.h"

#include <math.h>

#include "ht_vec.h"
#if !defined(__AVX__) && defined(__SSE2__)
#include <xmmintrin.h>
#endif

/* The float scalars of one step. */
typedef struct {
    float sign;        /* -1 when maximizing */
    float decay;       /* Adam's weight_decay */
    float shrink;      /* AdamW's 1 - lr * weight_decay */
    float lerp_weight; /* 1 - beta1 */
    float beta2, one_minus_beta2, bias_correction2_sqrt, eps;
    float neg_step_size; /* -lr / (1 - beta1^step) */
} adam_scalars;

enum { ADAM_L2 = 1, ADAM_DECOUPLED = 2, ADAM_AMSGRAD = 4 };

HT_INLINE ht_vf vsqrt(ht_vf v) {
#if HT_VEC_BYTES == 64
    return _mm512_sqrt_ps(v);
#elif HT_VEC_BYTES == 32
    return _mm256_sqrt_ps(v);
#elif defined(__aarch64__) && defined(__ARM_NEON)
    return (ht_vf)vsqrtq_f32((float32x4_t)v);
#elif defined(__SSE2__)
    return _mm_sqrt_ps(v);
#else
    for (int l = 0; l < HT_VL; l++) v[l] = sqrtf(v[l]);
    return v;
#endif
}

/* torch.maximum: NaN when either is NaN. */
HT_INLINE ht_vf vmaximum(ht_vf a, ht_vf b) {
    ht_vi take_a = (a > b) | (a != a);
    return (ht_vf)(((ht_vi)a & take_a) | ((ht_vi)b & ~take_a));
}

/* torch's vectorised lerp: start + weight * (end - start) for a small weight, else
 * end - (1 - weight) * (end - start), each as one multiply-add. */
HT_INLINE ht_vf vlerp(ht_vf start, ht_vf end, float weight) {
    if (fabsf(weight) < 0.5f) return ht_vfma(ht_vsplat(weight), end - start, start);
    return ht_vfma(ht_vsplat(weight - 1.0f), end - start, end);
}

HT_INLINE ht_vf load(const float *p, int64_t count) {
    return count >= HT_VL ? ht_vload(p) : ht_vload_first(p, count);
}

HT_INLINE void store(float *p, ht_vf v, int64_t count) {
    if (count >= HT_VL)
        ht_vstore(p, v);
    else
        ht_vstore_first(p, v, count);
}

/* The step on `count` <= HT_VL elements (lanes past them are computed from zeros, not stored). */
HT_INLINE void adam_vector(float *w, const float *grad, float *m, float *v, float *vmax,
                           int64_t count, adam_scalars a, const int variant) {
    ht_vf g = load(grad, count) * ht_vsplat(a.sign), wv = load(w, count);
    if (variant & ADAM_DECOUPLED) wv = wv * ht_vsplat(a.shrink);
    if (variant & ADAM_L2) g = ht_vfma(wv, ht_vsplat(a.decay), g);
    ht_vf mv = vlerp(load(m, count), g, a.lerp_weight);
    ht_vf vv = load(v, count) * ht_vsplat(a.beta2) + ht_vsplat(a.one_minus_beta2) * g * g;
    store(m, mv, count);
    store(v, vv, count);
    if (variant & ADAM_AMSGRAD) {
        vv = vmaximum(load(vmax, count), vv);
        store(vmax, vv, count);
    }
    ht_vf denom = vsqrt(vv) / ht_vsplat(a.bias_correction2_sqrt) + ht_vsplat(a.eps);
    store(w, wv + ht_vsplat(a.neg_step_size) * mv / denom, count);
}

HT_INLINE void adam_stream(float *w, const float *g, float *m, float *v, float *vmax,
                           int64_t numel, adam_scalars a, const int variant) {
    int64_t i = 0;
    for (; i + HT_VL <= numel; i += HT_VL)
        adam_vector(w + i, g + i, m + i, v + i, vmax ? vmax + i : NULL, HT_VL, a, variant);
    if (i < numel)
        adam_vector(w + i, g + i, m + i, v + i, vmax ? vmax + i : NULL, numel - i, a, variant);
}

void ht_adam_step(float *w, const float *g, float *exp_avg, float *exp_avg_sq,
                  float *max_exp_avg_sq, int64_t numel, int64_t step, double lr, double beta1,
                  double beta2, double eps, double weight_decay, int decoupled_weight_decay,
                  int amsgrad, int maximize) {
    const double bias_correction1 = 1.0 - pow(beta1, (double)step);
    const double bias_correction2 = 1.0 - pow(beta2, (double)step);
    adam_scalars a = {
        .sign = maximize ? -1.0f : 1.0f,
        .decay = (float)weight_decay,
        .shrink = (float)(1.0 - lr * weight_decay),
        .lerp_weight = (float)(1.0 - beta1),
        .beta2 = (float)beta2,
        .one_minus_beta2 = (float)(1.0 - beta2),
        .bias_correction2_sqrt = (float)pow(bias_correction2, 0.5),
        .eps = (float)eps,
        .neg_step_size = (float)-(lr / bias_correction1),
    };
    int variant = amsgrad ? ADAM_AMSGRAD : 0;
    if (weight_decay != 0.0) variant |= decoupled_weight_decay ? ADAM_DECOUPLED : ADAM_L2;
    switch (variant) {
#define ADAM_CASE(V)                                                                          \
    case V: adam_stream(w, g, exp_avg, exp_avg_sq, max_exp_avg_sq, numel, a, V); break
        ADAM_CASE(0);
        ADAM_CASE(ADAM_L2);
        ADAM_CASE(ADAM_DECOUPLED);
        ADAM_CASE(ADAM_AMSGRAD);
        ADAM_CASE(ADAM_AMSGRAD | ADAM_L2);
        ADAM_CASE(ADAM_AMSGRAD | ADAM_DECOUPLED);
#undef ADAM_CASE
    }
}
