/* ht_gemm_portable.c: ht_gemm.h in plain C for CPUs without AVX-512. Fixed-width inner
 * blocks let gcc vectorise with whatever vector unit the target has. */
#include "ht_gemm.h"

#ifndef __AVX512F__

enum { LANES = 16, PANEL = 64 };

static void apply_epilogue(float *c, float *bufp, float g, ht_epilogue epilogue, ht_sgd_params sgd) {
    switch (epilogue) {
    case HT_EPI_STORE: *c = g; break;
    case HT_EPI_ADD: *c += g; break;
    case HT_EPI_SGD: ht_sgd_rule(c, bufp, g, sgd); break;
    }
}

/* a[k] . b[k] with 16 interleaved partial sums, added pairwise at the end. */
static float dot(const float *a, const float *b, int64_t k) {
    float part[LANES] = {0};
    int64_t p = 0;
    for (; p + LANES <= k; p += LANES)
        for (int l = 0; l < LANES; l++) part[l] += a[p + l] * b[p + l];
    for (int l = 0; p + l < k; l++) part[l] += a[p + l] * b[p + l];
    for (int half = LANES / 2; half > 0; half /= 2)
        for (int l = 0; l < half; l++) part[l] += part[l + half];
    return part[0];
}

void ht_gemm_nt(float *C, const float *A, const float *B, const float *bias,
                int64_t m, int64_t n, int64_t k) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float s = dot(A + i * k, B + j * k, k);
            C[i * n + j] = bias ? s + bias[j] : s;
        }
}

void ht_gemm_nn(float *C, float *buf, const float *A, int64_t a_row_stride, int64_t a_col_stride,
                const float *B, int64_t m, int64_t n, int64_t k, ht_epilogue epilogue,
                ht_sgd_params sgd) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j0 = 0; j0 < n; j0 += PANEL) {
            int64_t cols = n - j0 < PANEL ? n - j0 : PANEL;
            float acc[PANEL] = {0};
            for (int64_t p = 0; p < k; p++) {
                float a = A[i * a_row_stride + p * a_col_stride];
                const float *Bp = B + p * n + j0;
                if (cols == PANEL)
                    for (int l = 0; l < PANEL; l++) acc[l] += a * Bp[l];
                else
                    for (int l = 0; l < cols; l++) acc[l] += a * Bp[l];
            }
            for (int l = 0; l < cols; l++) {
                int64_t at = i * n + j0 + l;
                apply_epilogue(C + at, buf ? buf + at : NULL, acc[l], epilogue, sgd);
            }
        }
}

void ht_gemm_rank1_sgd_then_nt(float *W, float *buf, const float *dy, const float *x, int64_t m,
                               int64_t n, ht_sgd_params sgd, float *y, const float *x_next) {
    ht_gemm_nn(W, buf, dy, 1, m, x, m, n, 1, HT_EPI_SGD, sgd);
    ht_gemm_nt(y, x_next, W, NULL, 1, m, n);
}

void ht_gemm_colsum(float *C, float *buf, const float *X, int64_t rows, int64_t cols,
                    ht_epilogue epilogue, ht_sgd_params sgd) {
    for (int64_t j0 = 0; j0 < cols; j0 += PANEL) {
        int64_t width = cols - j0 < PANEL ? cols - j0 : PANEL;
        float acc[PANEL] = {0};
        for (int64_t i = 0; i < rows; i++)
            for (int l = 0; l < width; l++) acc[l] += X[i * cols + j0 + l];
        for (int l = 0; l < width; l++)
            apply_epilogue(C + j0 + l, buf ? buf + j0 + l : NULL, acc[l], epilogue, sgd);
    }
}

#endif
