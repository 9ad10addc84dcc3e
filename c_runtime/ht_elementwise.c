/* ht_elementwise.c: elementwise arithmetic, broadcasting a row vector, fills and copies. */
#include "ht_kernels.h"

#include <string.h>

#include "ht_simd.h"
#include "ht_vec.h"

void ht_add(float *y, const float *a, const float *b, int64_t numel) {
    HT_FOR(i, numel, y[i] = a[i] + b[i]);
}

void ht_sub(float *y, const float *a, const float *b, int64_t numel) {
    HT_FOR(i, numel, y[i] = a[i] - b[i]);
}

void ht_mul(float *y, const float *a, const float *b, int64_t numel) {
    HT_FOR(i, numel, y[i] = a[i] * b[i]);
}

void ht_mul_bwd(float *da, float *db, const float *dy, const float *a, const float *b,
                int64_t numel, int accumulate) {
    if (da && accumulate) HT_FOR(i, numel, da[i] = da[i] + dy[i] * b[i]);
    if (da && !accumulate) HT_FOR(i, numel, da[i] = dy[i] * b[i]);
    if (db && accumulate) HT_FOR(i, numel, db[i] = db[i] + dy[i] * a[i]);
    if (db && !accumulate) HT_FOR(i, numel, db[i] = dy[i] * a[i]);
}

void ht_scale(float *y, const float *x, float s, int64_t numel) {
    HT_FOR(i, numel, y[i] = s * x[i]);
}

/* A row at a time in vectors, its end in a part of one: a row shorter than a vector (a
 * classifier's ten outputs) would otherwise be added a float at a time. */
void ht_add_rowvec(float *y, const float *x, const float *v, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        float *yr = y + r * cols;
        const float *xr = x + r * cols;
        int64_t j = 0;
        for (; j + HT_VL <= cols; j += HT_VL)
            ht_vstore(yr + j, ht_vload(xr + j) + ht_vload(v + j));
        if (j < cols) {
            const int64_t rest = cols - j;
            ht_vstore_first(yr + j, ht_vload_first(xr + j, rest) + ht_vload_first(v + j, rest),
                            rest);
        }
    }
}

void ht_axpy(float *y, float a, const float *x, int64_t numel) {
    HT_FOR(i, numel, y[i] = y[i] + a * x[i]);
}

void ht_fill(float *y, float value, int64_t numel) {
    HT_FOR(i, numel, y[i] = value);
}

void ht_copy(float *y, const float *x, int64_t numel) {
    if (y != x && numel > 0) memcpy(y, x, (size_t)numel * sizeof *y);
}
