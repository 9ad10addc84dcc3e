/* ht_dropout.c: inverted dropout, its mask drawn from the runtime's splitmix64 generator. */
#include "ht_kernels.h"

#include <math.h>
#include <string.h>

#include "ht_simd.h"

/* torch's noise.bernoulli_(1 - p).div_(1 - p): the kept elements' factor, in float. */
static float keep_scale(double p) { return 1.0f / (float)(1.0 - p); }

void ht_dropout_fwd(float *y, uint8_t *mask, const float *x, double p, uint64_t *state,
                    int64_t numel) {
    if (p == 0.0) {
        memset(mask, 1, (size_t)numel);
        if (y != x) memcpy(y, x, (size_t)numel * sizeof(float));
        return;
    }
    if (p == 1.0) {
        memset(mask, 0, (size_t)numel);
        HT_FOR(i, numel, y[i] = x[i] * 0.0f);
        return;
    }
    /* Draw i is ht_rng_uniform from the state s0 + i * gamma (splitmix64 adds gamma at each
     * draw): the draws are independent, and the mask's loop, on its own, vectorises.
     * ht_rng_uniform is (z >> 40) / 2^24, so u >= p exactly when (z >> 40) >= ceil(p * 2^24). */
    uint64_t gamma = 0;
    (void)ht_rng_next(&gamma); /* the state after one draw from 0: the increment */
    const uint64_t s0 = *state, threshold = (uint64_t)ceil(p * 16777216.0);
    const float scale = keep_scale(p);
    HT_FOR(i, numel, {
        uint64_t at = s0 + (uint64_t)i * gamma;
        mask[i] = (uint8_t)((ht_rng_next(&at) >> 40) >= threshold);
    });
    HT_FOR(i, numel, y[i] = x[i] * (mask[i] ? scale : 0.0f));
    *state = s0 + (uint64_t)numel * gamma;
}

void ht_dropout_bwd(float *dx, const float *dy, const uint8_t *mask, double p, int64_t numel,
                    int accumulate) {
    const float scale = keep_scale(p);
    if (accumulate)
        HT_FOR(i, numel, dx[i] = dx[i] + dy[i] * (mask[i] ? scale : 0.0f));
    else
        HT_FOR(i, numel, dx[i] = dy[i] * (mask[i] ? scale : 0.0f));
}
