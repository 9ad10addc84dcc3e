/* ht_softmax.c: softmax and log-softmax over the last dimension, and their gradients. */
#include "ht_kernels.h"

#include <math.h>

#include "ht_simd.h"
#include "ht_vmath.h"

/* A NaN may be skipped here: it still reaches the row's sum of exponentials, which makes the
 * whole row NaN, as in torch. */
static float row_max(const float *x, int64_t cols) {
    float m = x[0];
    for (int64_t j = 1; j < cols; j++) m = x[j] > m ? x[j] : m;
    return m;
}

/* Rows of at most HT_VL values (a classifier's few classes) go up to ROW_BLOCK at a time, each
 * step over all of the block's rows: their exponentials are independent, and one row at a
 * time waited on each row's chain of max, exp, sum and log. */
#define ROW_BLOCK 8

static void log_softmax_short_rows(float *y, const float *x, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r += ROW_BLOCK) {
        const int block = rows - r < ROW_BLOCK ? (int)(rows - r) : ROW_BLOCK;
        float m[ROW_BLOCK], log_sum[ROW_BLOCK];
        ht_vf e[ROW_BLOCK];
        for (int b = 0; b < block; b++) m[b] = row_max(x + (r + b) * cols, cols);
        for (int b = 0; b < block; b++)
            e[b] = ht_vexp(ht_vload_first(x + (r + b) * cols, cols) - ht_vsplat(m[b]));
        for (int b = 0; b < block; b++) {
            float sum = 0.0f;
            for (int64_t l = 0; l < cols; l++) sum += e[b][l];
            log_sum[b] = logf(sum);
        }
        for (int b = 0; b < block; b++) {
            const float *xr = x + (r + b) * cols;
            float *yr = y + (r + b) * cols;
            for (int64_t j = 0; j < cols; j++) yr[j] = xr[j] - m[b] - log_sum[b];
        }
    }
}

void ht_log_softmax_fwd(float *y, const float *x, int64_t rows, int64_t cols) {
    if (cols <= 0) return;
    if (cols <= HT_VL) {
        log_softmax_short_rows(y, x, rows, cols);
        return;
    }
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        const float m = row_max(xr, cols);
        float sum = 0.0f;
        for (int64_t j = 0; j < cols; j += HT_VL) {
            const int64_t count = cols - j < HT_VL ? cols - j : HT_VL;
            const ht_vf e = ht_vexp(ht_vload_first(xr + j, count) - ht_vsplat(m));
            for (int64_t l = 0; l < count; l++) sum += e[l];
        }
        const float log_sum = logf(sum);
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
        for (int64_t j = 0; j < cols; j += HT_VL) {
            const int64_t count = cols - j < HT_VL ? cols - j : HT_VL;
            const ht_vf g = ht_vload_first(dyr + j, count) -
                            ht_vexp(ht_vload_first(yr + j, count)) * ht_vsplat(dy_sum);
            ht_vstore_first(dxr + j, accumulate ? ht_vload_first(dxr + j, count) + g : g, count);
        }
    }
}

void ht_softmax_fwd(float *y, const float *x, int64_t rows, int64_t cols) {
    if (cols <= 0) return;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        const float m = row_max(xr, cols);
        HT_VMAP(yr, xr, cols, x, ht_vexp(x - ht_vsplat(m)));
        float sum = 0.0f;
        for (int64_t j = 0; j < cols; j++) sum += yr[j];
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
