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

/* Short rows HT_VL at a time, one row per lane: column j of the block's rows, which are
 * `cols` apart, in one vector (a gather where the CPU has one), so that max, exp and sum go
 * down the columns for all the rows at once instead of along each row. The same operations
 * in the same order for each row as log_softmax_short_rows, so the same bits. */
HT_INLINE ht_vi lane_offsets(int64_t stride) {
    ht_vi at;
    for (int l = 0; l < HT_VL; l++) at[l] = (int32_t)(l * stride);
    return at;
}

HT_INLINE ht_vf load_column(const float *p, ht_vi at) {
#if HT_VEC_BYTES == 64
    return _mm512_i32gather_ps((__m512i)at, p, 4);
#elif HT_VEC_BYTES == 32 && defined(__AVX2__)
    return _mm256_i32gather_ps(p, (__m256i)at, 4);
#else
    ht_vf v;
    for (int l = 0; l < HT_VL; l++) v[l] = p[at[l]];
    return v;
#endif
}

HT_INLINE void store_column(float *p, ht_vi at, ht_vf v) {
#if HT_VEC_BYTES == 64
    _mm512_i32scatter_ps(p, (__m512i)at, v, 4);
#else
    for (int l = 0; l < HT_VL; l++) p[at[l]] = v[l];
#endif
}

/* Rows [0, rows - rows % HT_VL); returns how many it did. */
static int64_t log_softmax_row_lanes(float *y, const float *x, int64_t rows, int64_t cols) {
    const ht_vi at = lane_offsets(cols);
    int64_t r = 0;
    for (; r + HT_VL <= rows; r += HT_VL) {
        const float *block = x + r * cols;
        ht_vf column[HT_VL];
        ht_vf m = column[0] = load_column(block, at), sum = ht_vzero();
        for (int64_t j = 1; j < cols; j++) {
            column[j] = load_column(block + j, at);
            m = ht_vselect(column[j] > m, column[j], m);
        }
        for (int64_t j = 0; j < cols; j++) sum += ht_vexp(column[j] - m);
        ht_vf log_sum;
        for (int l = 0; l < HT_VL; l++) log_sum[l] = logf(sum[l]);
        for (int64_t j = 0; j < cols; j++)
            store_column(y + r * cols + j, at, column[j] - m - log_sum);
    }
    return r;
}

void ht_log_softmax_fwd(float *y, const float *x, int64_t rows, int64_t cols) {
    if (cols <= 0) return;
    if (cols <= HT_VL) {
        const int64_t done = log_softmax_row_lanes(y, x, rows, cols);
        log_softmax_short_rows(y + done * cols, x + done * cols, rows - done, cols);
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

/* ht_log_softmax_bwd's rows [0, rows - rows % HT_VL) of at most HT_VL values, HT_VL at a
 * time, one row per lane (as log_softmax_row_lanes); returns how many it did. */
static int64_t log_softmax_bwd_row_lanes(float *dx, const float *dy, const float *y,
                                         int64_t rows, int64_t cols, int accumulate) {
    const ht_vi at = lane_offsets(cols);
    int64_t r = 0;
    for (; r + HT_VL <= rows; r += HT_VL) {
        const int64_t first = r * cols;
        ht_vf dy_column[HT_VL], dy_sum = ht_vzero();
        for (int64_t j = 0; j < cols; j++) {
            dy_column[j] = load_column(dy + first + j, at);
            dy_sum += dy_column[j];
        }
        for (int64_t j = 0; j < cols; j++) {
            const ht_vf g = dy_column[j] - ht_vexp(load_column(y + first + j, at)) * dy_sum;
            store_column(dx + first + j, at, accumulate ? load_column(dx + first + j, at) + g : g);
        }
    }
    return r;
}

void ht_log_softmax_bwd(float *dx, const float *dy, const float *y, int64_t rows, int64_t cols,
                        int accumulate) {
    const int64_t done = cols > 0 && cols <= HT_VL
                             ? log_softmax_bwd_row_lanes(dx, dy, y, rows, cols, accumulate)
                             : 0;
    for (int64_t r = done; r < rows; r++) {
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
