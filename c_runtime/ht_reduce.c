/* ht_reduce.c: sum and mean of a whole tensor, and their gradients. */
#include "ht_kernels.h"

#include "ht_simd.h"

/* In double (a float running sum's rounding error grows with numel, e.g. an epoch of losses),
 * with 8 independent partial sums so that the additions pipeline. */
static double sum_double(const float *x, int64_t numel) {
    double part[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= numel; i += 8)
        for (int l = 0; l < 8; l++) part[l] += x[i + l];
    for (int l = 0; i + l < numel; l++) part[l] += x[i + l];
    return ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
}

void ht_sum_all(float *out, const float *x, int64_t numel) { *out = (float)sum_double(x, numel); }

void ht_sum_all_bwd(float *dx, float dout, int64_t numel, int accumulate) {
    if (accumulate)
        HT_FOR(i, numel, dx[i] = dx[i] + dout);
    else
        HT_FOR(i, numel, dx[i] = dout);
}

void ht_mean_all(float *out, const float *x, int64_t numel) {
    *out = (float)(sum_double(x, numel) / (double)numel);
}

void ht_mean_all_bwd(float *dx, float dout, int64_t numel, int accumulate) {
    float g = dout / (float)numel;
    ht_sum_all_bwd(dx, g, numel, accumulate);
}
