/* ht_tensor_ops.c: the tensor operations people reach for first (division, exp, log, clamp,
 * casts, reductions and broadcasts along a dim, transpose, matrix products, concatenation and
 * slices), forward and backward. A tensor seen along one dim is [outer, n, inner]: `outer` the
 * product of the dims before it, `inner` of those after it. */
#include "ht_kernels.h"

#include <math.h>
#include <string.h>

#include "ht_gemm.h"
#include "ht_simd.h"
#include "ht_vmath.h"

static const ht_sgd_params no_sgd = {0};

/* ---- elementwise ---- */

void ht_div(float *y, const float *a, const float *b, int64_t numel) {
    HT_FOR(i, numel, y[i] = a[i] / b[i]);
}

void ht_div_bwd_divisor(float *db, const float *dy, const float *y, const float *b, int64_t numel,
                        int accumulate) {
    if (accumulate) HT_FOR(i, numel, db[i] = db[i] - dy[i] * y[i] / b[i]);
    else HT_FOR(i, numel, db[i] = -dy[i] * y[i] / b[i]);
}

void ht_div_scalar(float *y, const float *x, float s, int64_t numel) {
    HT_FOR(i, numel, y[i] = x[i] / s);
}

void ht_scalar_div(float *y, float s, const float *x, int64_t numel) {
    HT_FOR(i, numel, y[i] = s / x[i]);
}

void ht_add_scalar(float *y, const float *x, float s, int64_t numel) {
    HT_FOR(i, numel, y[i] = x[i] + s);
}

void ht_exp_fwd(float *y, const float *x, int64_t numel) {
    HT_VMAP(y, x, numel, v, ht_vexp(v));
}

void ht_log_fwd(float *y, const float *x, int64_t numel) {
    for (int64_t i = 0; i < numel; i++) y[i] = logf(x[i]);
}

/* Comparisons with NaN are false: a NaN stays NaN and gets no gradient (torch); a NaN bound
 * makes every output NaN, with no gradient either. */
void ht_clamp_min_fwd(float *y, const float *x, float lo, int64_t numel) {
    HT_FOR(i, numel, y[i] = x[i] < lo || lo != lo ? lo : x[i]);
}

void ht_clamp_min_bwd(float *dx, const float *dy, const float *x, float lo, int64_t numel,
                      int accumulate) {
    if (accumulate) HT_FOR(i, numel, dx[i] = dx[i] + (x[i] >= lo ? dy[i] : 0.0f));
    else HT_FOR(i, numel, dx[i] = x[i] >= lo ? dy[i] : 0.0f);
}

void ht_clamp_max_fwd(float *y, const float *x, float hi, int64_t numel) {
    HT_FOR(i, numel, y[i] = x[i] > hi || hi != hi ? hi : x[i]);
}

void ht_clamp_max_bwd(float *dx, const float *dy, const float *x, float hi, int64_t numel,
                      int accumulate) {
    if (accumulate) HT_FOR(i, numel, dx[i] = dx[i] + (x[i] <= hi ? dy[i] : 0.0f));
    else HT_FOR(i, numel, dx[i] = x[i] <= hi ? dy[i] : 0.0f);
}

void ht_i64_to_f32(float *y, const int64_t *x, int64_t numel) {
    for (int64_t i = 0; i < numel; i++) y[i] = (float)x[i];
}

/* ---- along one dim ---- */

/* sum of x[n] in 16 running sums (which the compiler vectorises), then the rest */
static float row_sum(const float *x, int64_t n) {
    float lanes[16] = {0.0f};
    int64_t j = 0;
    for (; j + 16 <= n; j += 16)
        for (int l = 0; l < 16; l++) lanes[l] += x[j + l];
    float sum = 0.0f;
    for (int l = 0; l < 16; l++) sum += lanes[l];
    for (; j < n; j++) sum += x[j];
    return sum;
}

/* y[o,i] = sum_j x[o,j,i] */
void ht_sum_dim(float *y, const float *x, int64_t outer, int64_t n, int64_t inner) {
    if (inner == 1) {
        for (int64_t o = 0; o < outer; o++) y[o] = row_sum(x + o * n, n);
        return;
    }
    for (int64_t o = 0; o < outer; o++) {
        float *yo = y + o * inner;
        const float *xo = x + o * n * inner;
        HT_FOR(i, inner, yo[i] = 0.0f);
        for (int64_t j = 0; j < n; j++) {
            const float *xj = xo + j * inner;
            HT_FOR(i, inner, yo[i] = yo[i] + xj[i]);
        }
    }
}

void ht_mean_dim(float *y, const float *x, int64_t outer, int64_t n, int64_t inner) {
    ht_sum_dim(y, x, outer, n, inner);
    HT_FOR(i, outer * inner, y[i] = y[i] / (float)n);   /* as torch: the sum over n */
}

/* y[o,j,i] = scale * x[o,i] (+ y[o,j,i] when accumulate) */
static void expand_dim(float *y, const float *x, int64_t outer, int64_t n, int64_t inner,
                       float scale, int accumulate) {
    for (int64_t o = 0; o < outer; o++) {
        const float *xo = x + o * inner;
        float *yo = y + o * n * inner;
        if (inner == 1) {   /* a row of n copies of one value */
            float v = scale * xo[0];
            if (accumulate) HT_FOR(j, n, yo[j] = yo[j] + v);
            else HT_FOR(j, n, yo[j] = v);
            continue;
        }
        for (int64_t j = 0; j < n; j++) {
            float *yj = yo + j * inner;
            if (accumulate) HT_FOR(i, inner, yj[i] = yj[i] + scale * xo[i]);
            else HT_FOR(i, inner, yj[i] = scale * xo[i]);
        }
    }
}

void ht_expand_dim(float *y, const float *x, int64_t outer, int64_t n, int64_t inner) {
    expand_dim(y, x, outer, n, inner, 1.0f, 0);
}

void ht_mean_dim_bwd(float *dx, const float *dy, int64_t outer, int64_t n, int64_t inner,
                     int accumulate) {
    expand_dim(dx, dy, outer, n, inner, 1.0f / (float)n, accumulate);
}

/* ---- slices and concatenation ---- */

/* `outer` rows of `count` elements of `size` bytes, from src (`src_stride` elements apart)
 * to dst (`dst_stride` apart) */
static void copy_rows(void *dst, int64_t dst_stride, const void *src, int64_t src_stride,
                      int64_t outer, int64_t count, size_t size) {
    if (count <= 0) return;
    for (int64_t o = 0; o < outer; o++)
        memcpy((char *)dst + (size_t)(o * dst_stride) * size,
               (const char *)src + (size_t)(o * src_stride) * size, (size_t)count * size);
}

static void narrow(void *y, const void *x, int64_t outer, int64_t n, int64_t start,
                   int64_t length, int64_t inner, size_t size) {
    copy_rows(y, length * inner, (const char *)x + (size_t)(start * inner) * size, n * inner,
              outer, length * inner, size);
}

static void cat(void *y, const void *a, const void *b, int64_t outer, int64_t na, int64_t nb,
                int64_t inner, size_t size) {
    int64_t stride = (na + nb) * inner;
    copy_rows(y, stride, a, na * inner, outer, na * inner, size);
    copy_rows((char *)y + (size_t)(na * inner) * size, stride, b, nb * inner, outer, nb * inner,
              size);
}

void ht_narrow_fwd(float *y, const float *x, int64_t outer, int64_t n, int64_t start,
                   int64_t length, int64_t inner) {
    narrow(y, x, outer, n, start, length, inner, sizeof *y);
}

void ht_narrow_i64(int64_t *y, const int64_t *x, int64_t outer, int64_t n, int64_t start,
                   int64_t length, int64_t inner) {
    narrow(y, x, outer, n, start, length, inner, sizeof *y);
}

void ht_narrow_bwd(float *dx, const float *dy, int64_t outer, int64_t n, int64_t start,
                   int64_t length, int64_t inner, int accumulate) {
    for (int64_t o = 0; o < outer; o++) {
        float *dxo = dx + o * n * inner;
        const float *dyo = dy + o * length * inner;
        if (!accumulate) {
            HT_FOR(i, n * inner, dxo[i] = 0.0f);
        }
        float *part = dxo + start * inner;
        HT_FOR(i, length * inner, part[i] = part[i] + dyo[i]);
    }
}

void ht_cat_fwd(float *y, const float *a, const float *b, int64_t outer, int64_t na, int64_t nb,
                int64_t inner) {
    cat(y, a, b, outer, na, nb, inner, sizeof *y);
}

void ht_cat_i64(int64_t *y, const int64_t *a, const int64_t *b, int64_t outer, int64_t na,
                int64_t nb, int64_t inner) {
    cat(y, a, b, outer, na, nb, inner, sizeof *y);
}

void ht_cat_bwd(float *dx, const float *dy, int64_t outer, int64_t na, int64_t nb, int64_t inner,
                int second, int accumulate) {
    int64_t start = second ? na : 0, length = second ? nb : na;
    for (int64_t o = 0; o < outer; o++) {
        float *dxo = dx + o * length * inner;
        const float *dyo = dy + (o * (na + nb) + start) * inner;
        if (accumulate) HT_FOR(i, length * inner, dxo[i] = dxo[i] + dyo[i]);
        else HT_FOR(i, length * inner, dxo[i] = dyo[i]);
    }
}

/* ---- transpose and matrix products ---- */

void ht_transpose(float *y, const float *x, int64_t planes, int64_t rows, int64_t cols) {
    enum { TILE = 16 };
    for (int64_t p = 0; p < planes; p++) {
        const float *xp = x + p * rows * cols;
        float *yp = y + p * rows * cols;
        for (int64_t r0 = 0; r0 < rows; r0 += TILE)
            for (int64_t c0 = 0; c0 < cols; c0 += TILE) {
                int64_t r1 = r0 + TILE < rows ? r0 + TILE : rows;
                int64_t c1 = c0 + TILE < cols ? c0 + TILE : cols;
                for (int64_t r = r0; r < r1; r++)
                    for (int64_t c = c0; c < c1; c++) yp[c * rows + r] = xp[r * cols + c];
            }
    }
}

/* y[m,n] = a[m,k] @ b[k,n] */
static void mm(float *y, const float *a, const float *b, int64_t m, int64_t k, int64_t n) {
    ht_gemm_nn(y, NULL, a, k, 1, b, m, n, k, m, HT_EPI_STORE, no_sgd);
}

/* da[m,k] = dy[m,n] @ b[k,n]^T */
static void mm_grad_a(float *da, const float *dy, const float *b, int64_t m, int64_t k, int64_t n) {
    ht_gemm_nt(da, dy, b, NULL, m, k, n);
}

/* db[k,n] (= | +=) a[m,k]^T @ dy[m,n] */
static void mm_grad_b(float *db, const float *dy, const float *a, int64_t m, int64_t k, int64_t n,
                      int accumulate) {
    ht_gemm_nn(db, NULL, a, 1, k, dy, k, n, m, m, accumulate ? HT_EPI_ADD : HT_EPI_STORE, no_sgd);
}

void ht_matmul_fwd(float *y, const float *a, const float *b, int64_t planes, int64_t m, int64_t k,
                   int64_t n) {
    for (int64_t p = 0; p < planes; p++) mm(y + p * m * n, a + p * m * k, b + p * k * n, m, k, n);
}

void ht_matmul_bwd_a(float *da, const float *dy, const float *b, int64_t planes, int64_t m,
                     int64_t k, int64_t n) {
    for (int64_t p = 0; p < planes; p++)
        mm_grad_a(da + p * m * k, dy + p * m * n, b + p * k * n, m, k, n);
}

void ht_matmul_bwd_b(float *db, const float *dy, const float *a, int64_t planes, int64_t m,
                     int64_t k, int64_t n, int accumulate) {
    for (int64_t p = 0; p < planes; p++)
        mm_grad_b(db + p * k * n, dy + p * m * n, a + p * m * k, m, k, n, accumulate);
}
