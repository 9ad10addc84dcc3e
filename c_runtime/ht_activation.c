/* ht_activation.c: relu, sigmoid and tanh; the backward kernels work from the output y. */
#include "ht_kernels.h"

#include <math.h>

#include "ht_simd.h"

/* dx (= | +=) GRAD, GRAD an expression of element i. */
#define HT_GRAD_LOOP(dx, n, accumulate, GRAD)        \
    do {                                             \
        if (accumulate)                              \
            HT_FOR(i, n, dx[i] = dx[i] + (GRAD));    \
        else                                         \
            HT_FOR(i, n, dx[i] = (GRAD));            \
    } while (0)

/* Written so that a NaN fails the comparison and passes through, as in torch (and -0.0
 * stays -0.0); `x > 0 ? x : 0` would turn NaN into 0. */
void ht_relu_fwd(float *y, const float *x, int64_t numel) {
    HT_FOR(i, numel, y[i] = x[i] < 0.0f ? 0.0f : x[i]);
}

/* torch's threshold_backward: the gradient is cut only where y <= 0, so it flows at a NaN. */
void ht_relu_bwd(float *dx, const float *dy, const float *y, int64_t numel, int accumulate) {
    HT_GRAD_LOOP(dx, numel, accumulate, y[i] <= 0.0f ? 0.0f : dy[i]);
}

void ht_sigmoid_fwd(float *y, const float *x, int64_t numel) {
    for (int64_t i = 0; i < numel; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
}

void ht_sigmoid_bwd(float *dx, const float *dy, const float *y, int64_t numel, int accumulate) {
    HT_GRAD_LOOP(dx, numel, accumulate, dy[i] * (1.0f - y[i]) * y[i]);
}

void ht_tanh_fwd(float *y, const float *x, int64_t numel) {
    for (int64_t i = 0; i < numel; i++) y[i] = tanhf(x[i]);
}

void ht_tanh_bwd(float *dx, const float *dy, const float *y, int64_t numel, int accumulate) {
    HT_GRAD_LOOP(dx, numel, accumulate, dy[i] * (1.0f - y[i] * y[i]));
}
