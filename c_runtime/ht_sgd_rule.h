/* ht_sgd_rule.h (private to c_runtime): torch.optim.SGD's per-element update, shared by
 * ht_sgd_step and the fused linear backward+SGD kernels so that both give identical bits. */
#ifndef HT_SGD_RULE_H
#define HT_SGD_RULE_H

#include "ht_vec.h"

/* a*b+c, fused where the CPU has FMA (HT_HAS_FMA, as ht_vfma): torch's vectorised
 * add(alpha=) fuses, so both the scalar and the vector rule then match torch.optim.SGD bit
 * for bit. */
#if HT_HAS_FMA
#define HT_FMA(a, b, c) fmaf((a), (b), (c))
#else
#define HT_FMA(a, b, c) ((a) * (b) + (c))
#endif

typedef struct {
    float lr, momentum, dampening, weight_decay;
    int nesterov, first_step;
} ht_sgd_params;

/* torch/optim/sgd.py, _single_tensor_sgd:
 *   g += weight_decay * w                                        (if weight_decay != 0)
 *   buf = g on the first step, else momentum*buf + (1-dampening)*g   (if momentum != 0)
 *   g = g + momentum*buf if nesterov else buf                          (if momentum != 0)
 *   w -= lr * g
 * The parameters travel by value so that stores through w/buf cannot alias them. */
static inline void ht_sgd_rule(float *w, float *buf, float g, ht_sgd_params p) {
    if (p.weight_decay != 0.0f) g = HT_FMA(*w, p.weight_decay, g);
    if (p.momentum != 0.0f) {
        float b = p.first_step ? g : HT_FMA(g, 1.0f - p.dampening, *buf * p.momentum);
        *buf = b;
        g = p.nesterov ? HT_FMA(b, p.momentum, g) : b;
    }
    *w = HT_FMA(g, -p.lr, *w);
}

/* Which optional terms of the rule are active. Streaming loops are instantiated once per
 * variant (HT_SGD_VARIANTS) so that the per-vector work has no branches. */
enum { HT_SGD_DECAY = 1, HT_SGD_MOMENTUM = 2, HT_SGD_FIRST = 4, HT_SGD_NESTEROV = 8 };

static inline int ht_sgd_variant(ht_sgd_params p) {
    if (p.momentum == 0.0f) return p.weight_decay != 0.0f ? HT_SGD_DECAY : 0;
    return (p.weight_decay != 0.0f ? HT_SGD_DECAY : 0) | HT_SGD_MOMENTUM |
           (p.first_step ? HT_SGD_FIRST : 0) | (p.nesterov ? HT_SGD_NESTEROV : 0);
}

/* case v: CASE(v); for the 10 reachable variants (CASE ends with break or return). */
#define HT_SGD_VARIANTS(CASE)                                                                 \
    case 0: CASE(0); case 1: CASE(1);                                                         \
    case 2: CASE(2); case 3: CASE(3); case 6: CASE(6); case 7: CASE(7);                       \
    case 10: CASE(10); case 11: CASE(11); case 14: CASE(14); case 15: CASE(15);

/* The rule on a vector of HT_VL parameters at w (and momenta at buf), with the FMAs of
 * ht_sgd_rule; returns the updated parameters. `count` < HT_VL updates only the first
 * `count` (lanes past them are computed from zeros and not stored). `variant` is
 * ht_sgd_variant(p), a constant in the specialised loops. */
HT_INLINE ht_vf ht_sgd_rule_v(float *w, float *buf, ht_vf g, int64_t count, ht_sgd_params p,
                              const int variant) {
    const int whole = count >= HT_VL;
    ht_vf wv = whole ? ht_vload(w) : ht_vload_first(w, count);
    if (variant & HT_SGD_DECAY) g = ht_vfma(wv, ht_vsplat(p.weight_decay), g);
    if (variant & HT_SGD_MOMENTUM) {
        ht_vf m = ht_vsplat(p.momentum);
        ht_vf b = g;
        if (!(variant & HT_SGD_FIRST)) {
            ht_vf decayed = (whole ? ht_vload(buf) : ht_vload_first(buf, count)) * m;
            b = ht_vfma(g, ht_vsplat(1.0f - p.dampening), decayed);
        }
        if (whole)
            ht_vstore(buf, b);
        else
            ht_vstore_first(buf, b, count);
        g = (variant & HT_SGD_NESTEROV) ? ht_vfma(b, m, g) : b;
    }
    ht_vf updated = ht_vfma(g, ht_vsplat(-p.lr), wv);
    if (whole)
        ht_vstore(w, updated);
    else
        ht_vstore_first(w, updated, count);
    return updated;
}

#endif
