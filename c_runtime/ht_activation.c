/* ht_activation.c: relu, sigmoid and tanh; the backward kernels work from the output y. */
#include "ht_kernels.h"

#include <math.h>

#include "ht_parallel.h"
#include "ht_simd.h"
#include "ht_vmath.h"

/* dx (= | +=) GRAD, GRAD an expression of element i. */
#define HT_GRAD_LOOP(dx, n, accumulate, GRAD)        \
    do {                                             \
        if (accumulate)                              \
            HT_FOR(i, n, dx[i] = dx[i] + (GRAD));    \
        else                                         \
            HT_FOR(i, n, dx[i] = (GRAD));            \
    } while (0)

/* The arrays of an elementwise kernel split over threads (ht_parallel_range). */
typedef struct {
    float *out;
    const float *a, *b;
    int accumulate;
} elementwise;

/* Written so that a NaN fails the comparison and passes through, as in torch (and -0.0
 * stays -0.0); `x > 0 ? x : 0` would turn NaN into 0. */
static void relu_part(void *arg, int64_t from, int64_t to) {
    const elementwise *E = arg;
    float *y = E->out + from;
    const float *x = E->a + from;
    HT_FOR(i, to - from, y[i] = x[i] < 0.0f ? 0.0f : x[i]);
}

void ht_relu_fwd(float *y, const float *x, int64_t numel) {
    elementwise E = {y, x, NULL, 0};
    ht_parallel_range(numel, HT_PARALLEL_MIN_ELEMENTS, relu_part, &E);
}

/* torch's threshold_backward: the gradient is cut only where y <= 0, so it flows at a NaN. */
static void relu_bwd_part(void *arg, int64_t from, int64_t to) {
    const elementwise *E = arg;
    float *dx = E->out + from;
    const float *dy = E->a + from, *y = E->b + from;
    HT_GRAD_LOOP(dx, to - from, E->accumulate, y[i] <= 0.0f ? 0.0f : dy[i]);
}

void ht_relu_bwd(float *dx, const float *dy, const float *y, int64_t numel, int accumulate) {
    elementwise E = {dx, dy, y, accumulate};
    ht_parallel_range(numel, HT_PARALLEL_MIN_ELEMENTS, relu_bwd_part, &E);
}

void ht_sigmoid_fwd(float *y, const float *x, int64_t numel) {
    HT_VMAP(y, x, numel, v, ht_vsplat(1.0f) / (ht_vsplat(1.0f) + ht_vexp(-v)));
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
