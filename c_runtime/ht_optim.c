/* ht_optim.c: optimizer steps (the update rule itself lives in ht_sgd_rule.h). */
#include "ht_kernels.h"

#include "ht_sgd_rule.h"

HT_INLINE void sgd_stream(float *w, const float *g, float *buf, int64_t numel, ht_sgd_params sgd,
                          const int variant) {
    int64_t i = 0;
    for (; i + HT_VL <= numel; i += HT_VL)
        ht_sgd_rule_v(w + i, buf ? buf + i : NULL, ht_vload(g + i), HT_VL, sgd, variant);
    if (i < numel)
        ht_sgd_rule_v(w + i, buf ? buf + i : NULL, ht_vload_first(g + i, numel - i), numel - i, sgd,
                      variant);
}

void ht_sgd_step(float *w, const float *g, float *buf, int64_t numel, float lr,
                 float momentum, float dampening, float weight_decay, int nesterov,
                 int first_step) {
    ht_sgd_params sgd = {lr, momentum, dampening, weight_decay, nesterov, first_step};
    switch (ht_sgd_variant(sgd)) {
#define HT_SGD_STREAM(V) sgd_stream(w, g, buf, numel, sgd, (V)); break
        HT_SGD_VARIANTS(HT_SGD_STREAM)
#undef HT_SGD_STREAM
    }
}
