/* ht_optim.c: optimizer steps (the update rule itself lives in ht_sgd_rule.h). */
#include "ht_kernels.h"

#include "ht_sgd_rule.h"

#ifdef __AVX512F__
static inline __attribute__((always_inline)) void
sgd_stream(float *w, const float *g, float *buf, int64_t numel, ht_sgd_params sgd, const int variant) {
    int64_t i = 0;
    for (; i + 16 <= numel; i += 16)
        ht_sgd_rule_x16(w + i, buf ? buf + i : NULL, _mm512_loadu_ps(g + i), HT_ALL_LANES, sgd, variant);
    if (i < numel) {
        __mmask16 mask = ht_lane_mask(numel - i);
        ht_sgd_rule_x16(w + i, buf ? buf + i : NULL, _mm512_maskz_loadu_ps(mask, g + i), mask, sgd, variant);
    }
}
#endif

void ht_sgd_step(float *w, const float *g, float *buf, int64_t numel, float lr,
                 float momentum, float dampening, float weight_decay, int nesterov,
                 int first_step) {
    ht_sgd_params sgd = {lr, momentum, dampening, weight_decay, nesterov, first_step};
#ifdef __AVX512F__
    switch (ht_sgd_variant(sgd)) {
#define HT_SGD_STREAM(V) sgd_stream(w, g, buf, numel, sgd, (V)); break
        HT_SGD_VARIANTS(HT_SGD_STREAM)
#undef HT_SGD_STREAM
    }
#else
    for (int64_t i = 0; i < numel; i++) ht_sgd_rule(w + i, buf ? buf + i : NULL, g[i], sgd);
#endif
}
