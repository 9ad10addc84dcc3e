/* ht_dropout.c: inverted dropout, its mask drawn from the runtime's splitmix64 generator. */
#include "ht_kernels.h"

#include <math.h>
#include <string.h>

#include "ht_parallel.h"
#include "ht_simd.h"
#include "ht_vec.h"

/* Vectors of 64-bit states, as wide as the vector unit. */
#define HT_VL64 (HT_VEC_BYTES / 8)
typedef uint64_t ht_vu64 __attribute__((vector_size(HT_VEC_BYTES)));

typedef struct {
    float *out;
    uint8_t *mask;        /* the forward's; the backward reads it */
    const float *in;
    float scale;
    uint64_t s0, gamma, threshold;
    int accumulate;
} dropout_job;

/* torch's noise.bernoulli_(1 - p).div_(1 - p): the kept elements' factor, in float. */
static float keep_scale(double p) { return 1.0f / (float)(1.0 - p); }

/* Elements [from, to): their draws, mask and output. */
static void dropout_part(void *arg, int64_t from, int64_t to) {
    const dropout_job *D = arg;
    uint8_t *mask = D->mask + from;
    float *y = D->out + from;
    const float *x = D->in + from;
    const uint64_t first = D->s0 + (uint64_t)from * D->gamma, gamma = D->gamma;
    const uint64_t threshold = D->threshold;
    const float scale = D->scale;
    const int64_t count = to - from;
    int64_t i = 0;
    /* Vectors of states, written out: gcc's own vectorisation of the loop below uses 128-bit
     * 64-bit multiplies even where 512-bit ones exist. ht_rng_next, lane by lane. */
    ht_vu64 at, step = {0};
    for (int l = 0; l < HT_VL64; l++) at[l] = first + (uint64_t)l * gamma;
    step += (uint64_t)HT_VL64 * gamma;
    for (; i + HT_VL64 <= count; i += HT_VL64, at += step) {
        ht_vu64 z = at + gamma;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        const ht_vu64 keep = (z >> 40) >= threshold; /* all ones where kept */
        for (int l = 0; l < HT_VL64; l++) mask[i + l] = (uint8_t)(keep[l] & 1);
    }
    for (; i < count; i++) {
        uint64_t state = first + (uint64_t)i * gamma;
        mask[i] = (uint8_t)((ht_rng_next(&state) >> 40) >= threshold);
    }
    HT_FOR(q, count, y[q] = x[q] * (mask[q] ? scale : 0.0f));
}

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
    dropout_job D = {y, mask, x, keep_scale(p), *state, gamma, (uint64_t)ceil(p * 16777216.0), 0};
    ht_parallel_range(numel, HT_PARALLEL_MIN_ELEMENTS, dropout_part, &D);
    *state = D.s0 + (uint64_t)numel * gamma;
}

static void dropout_bwd_part(void *arg, int64_t from, int64_t to) {
    const dropout_job *D = arg;
    float *dx = D->out + from;
    const float *dy = D->in + from;
    const uint8_t *mask = D->mask + from;
    const float scale = D->scale;
    if (D->accumulate)
        HT_FOR(i, to - from, dx[i] = dx[i] + dy[i] * (mask[i] ? scale : 0.0f));
    else
        HT_FOR(i, to - from, dx[i] = dy[i] * (mask[i] ? scale : 0.0f));
}

void ht_dropout_bwd(float *dx, const float *dy, const uint8_t *mask, double p, int64_t numel,
                    int accumulate) {
    dropout_job D = {dx, (uint8_t *)mask, dy, keep_scale(p), 0, 0, 0, accumulate};
    ht_parallel_range(numel, HT_PARALLEL_MIN_ELEMENTS, dropout_bwd_part, &D);
}
