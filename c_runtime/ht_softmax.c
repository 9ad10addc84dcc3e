/* ht_softmax.c: softmax and log-softmax over the last dimension, and their gradients. */
#include "ht_kernels.h"

#include <math.h>

#include "ht_simd.h"

/* A NaN may be skipped here: it still reaches the row's sum of exponentials, which makes the
 * whole row NaN, as in torch. */
static float row_max(const float *x, int64_t cols) {
    float m = x[0];
    for (int64_t j = 1; j < cols; j++) m = x[j] > m ? x[j] : m;
    return m;
}

void ht_log_softmax_fwd(float *y, const float *x, int64_t rows, int64_t cols) {
    if (cols <= 0) return;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float m = row_max(xr, cols), sum = 0.0f;
        for (int64_t j = 0; j < cols; j++) sum += expf(xr[j] - m);
        float log_sum = logf(sum);
        HT_FOR(j, cols, yr[j] = xr[j] - m - log_sum);
    }
}

void ht_log_softmax_bwd(float *dx, const float *dy, const float *y, int64_t rows, int64_t cols,
                        int accumulate) {
    for (int64_t r = 0; r < rows; r++) {
        const float *dyr = dy + r * cols, *yr = y + r * cols;
        float *dxr = dx + r * cols;
        float dy_sum = 0.0f;
        for (int64_t j = 0; j < cols; j++) dy_sum += dyr[j];
        for (int64_t j = 0; j < cols; j++) {
            float g = dyr[j] - expf(yr[j]) * dy_sum;
            dxr[j] = accumulate ? dxr[j] + g : g;
        }
    }
}

void ht_softmax_fwd(float *y, const float *x, int64_t rows, int64_t cols) {
    if (cols <= 0) return;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float m = row_max(xr, cols), sum = 0.0f;
        for (int64_t j = 0; j < cols; j++) {
            yr[j] = expf(xr[j] - m);
            sum += yr[j];
        }
        HT_FOR(j, cols, yr[j] = yr[j] / sum);
    }
}

void ht_softmax_bwd(float *dx, const float *dy, const float *y, int64_t rows, int64_t cols,
                    int accumulate) {
    for (int64_t r = 0; r < rows; r++) {
        const float *dyr = dy + r * cols, *yr = y + r * cols;
        float *dxr = dx + r * cols;
        float dot = 0.0f;
        for (int64_t j = 0; j < cols; j++) dot += dyr[j] * yr[j];
        if (accumulate)
            HT_FOR(j, cols, dxr[j] = dxr[j] + yr[j] * (dyr[j] - dot));
        else
            HT_FOR(j, cols, dxr[j] = yr[j] * (dyr[j] - dot));
    }
}
