/* ht_loss.c: negative log-likelihood and mean squared error losses and their gradients. */
#include "ht_kernels.h"

#include <string.h>

#include "ht_simd.h"

int ht_nll_loss_fwd(float *loss, const float *logp, const int64_t *target, int64_t rows,
                    int64_t cols, int mean) {
    double total = 0.0;
    for (int64_t i = 0; i < rows; i++) {
        int64_t t = target[i];
        if (t < 0 || t >= cols) {
            ht_set_error("nll_loss: target %lld is out of range [0, %lld) at row %lld",
                         (long long)t, (long long)cols, (long long)i);
            return HT_ERROR;
        }
        total += logp[i * cols + t];
    }
    *loss = (float)(mean ? -total / (double)rows : -total);
    return HT_OK;
}

void ht_nll_loss_bwd(float *dlogp, float dloss, const int64_t *target, int64_t rows,
                     int64_t cols, int mean, int accumulate) {
    if (!accumulate && rows * cols > 0) memset(dlogp, 0, (size_t)(rows * cols) * sizeof *dlogp);
    float g = mean ? -dloss / (float)rows : -dloss;
    for (int64_t i = 0; i < rows; i++) {
        int64_t t = target[i];
        if (t >= 0 && t < cols) dlogp[i * cols + t] += g;
    }
}

void ht_mse_loss_fwd(float *loss, const float *x, const float *target, int64_t numel) {
    double total = 0.0;
    for (int64_t i = 0; i < numel; i++) {
        double d = (double)x[i] - (double)target[i];
        total += d * d;
    }
    *loss = (float)(total / (double)numel);
}

void ht_mse_loss_bwd(float *dx, float dloss, const float *x, const float *target,
                     int64_t numel, int accumulate) {
    float norm = 2.0f / (float)numel; /* torch: norm * (x - target) * grad_output */
    if (accumulate)
        HT_FOR(i, numel, dx[i] = dx[i] + norm * (x[i] - target[i]) * dloss);
    else
        HT_FOR(i, numel, dx[i] = norm * (x[i] - target[i]) * dloss);
}
