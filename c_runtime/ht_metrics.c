/* ht_metrics.c: predicted classes and accuracy counts. */
#include "ht_kernels.h"

void ht_argmax_rows(int64_t *idx, const float *x, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        int64_t best = 0;
        for (int64_t j = 1; j < cols; j++) {
            float v = xr[j], b = xr[best];
            if (b != b) break; /* a NaN is the maximum and the first one wins */
            if (v > b || v != v) best = j;
        }
        idx[r] = best;
    }
}

int64_t ht_count_equal(const int64_t *a, const int64_t *b, int64_t n) {
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++) count += a[i] == b[i];
    return count;
}
