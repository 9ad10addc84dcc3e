/* ht_gemm_fused.c: a training step's update of W fused with the next step's forward through
 * W, in one pass over W (ht_gemm_sgd_then_nt, ht_gemm_rank1_sgd_then_nt); see
 * ht_gemm_impl.h. */
#include <math.h>
#include <stdatomic.h>

#include "ht_gemm_impl.h"

/* ---- a step of a batch: W <- SGD(W, dy^T x), then y = x_next W^T ---- */

/* Rows of W updated, then the columns of y that need only those rows, a group at a time: the
 * group is still in cache when the forward reads it, and the threads (each with its own
 * rows) need no barrier between the update and the forward. */
#define UPDATE_GROUP_ROWS (2 * NN_ROWS)

typedef struct {
    nn_product update;
    nt_product forward;
} update_then_forward;

static void update_then_forward_task(void *arg, int t, int tasks) {
    const update_then_forward *S = arg;
    const int64_t vectors = (S->update.n + HT_VL - 1) / HT_VL;
    ht_share share = ht_task_share(S->update.m, t, tasks);
    split groups = split_at_most(share.to - share.from, UPDATE_GROUP_ROWS);
    for (int64_t g = 0, i = share.from; g < groups.parts; i += part_size(groups, g++)) {
        ht_gemm_nn_block(&S->update, i, i + part_size(groups, g), 0, vectors);
        ht_gemm_nt_block(&S->forward, 0, S->forward.m, i, i + part_size(groups, g));
    }
}

void ht_gemm_sgd_then_nt(float *W, float *buf, const float *dy, const float *x, int64_t m,
                         int64_t n, int64_t k, ht_sgd_params sgd, float *y, const float *x_next,
                         int64_t k_next) {
    update_then_forward S = {{W, buf, dy, x, 1, m, m, n, k, HT_EPI_SGD, sgd, 0},
                             {y, x_next, W, NULL, k_next, m, n, 1}};
    int threads = threads_for(k, (k + k_next) * m * n);
    ht_parallel((int)min64(threads, m), update_then_forward_task, &S);
}

/* ---- the batch-1 step: W <- SGD(W, dy x^T), then y = W x_next ---- */

/* The sweep updates this many rows of W side by side: each row's product is a chain of
 * dependent multiply-adds, and one chain alone would wait on each. */
#define FUSED_ROWS 4

/* Rows row[0..Q) of W side by side (W, buf, dy and acc are indexed by row): each element
 * updated as ht_gemm_nn's rank-1 update does, each row's product accumulated as ht_gemm_nt's
 * tiles do (same chunks, multiply-adds and order; the lanes past the end of a row zeroed, as
 * the zero-padded chunks there are). */
HT_INLINE void sweep_rows(float *W, float *buf, const float *dy, const float *x, int64_t n,
                          ht_sgd_params sgd, const int sgd_variant, const float *x_next,
                          ht_vf *acc, const int *row, const int Q) {
    float *Wq[FUSED_ROWS], *bufq[FUSED_ROWS];
    ht_vf d[FUSED_ROWS], a[FUSED_ROWS];
    HT_UNROLL(4)
    for (int q = 0; q < Q; q++) {
        Wq[q] = W + row[q] * n;
        bufq[q] = buf ? buf + row[q] * n : NULL;
        d[q] = ht_vsplat(dy[row[q]]);
        a[q] = ht_vzero();
    }
    int64_t j = 0;
    for (; j + HT_VL <= n; j += HT_VL) {
        ht_vf xv = ht_vload(x + j), xn = ht_vload(x_next + j);
        HT_UNROLL(4)
        for (int q = 0; q < Q; q++) {
            ht_vf w = ht_sgd_rule_v(Wq[q] + j, bufq[q] ? bufq[q] + j : NULL,
                                    ht_vfma(d[q], xv, ht_vzero()), HT_VL, sgd, sgd_variant);
            a[q] = ht_vfma(xn, w, a[q]);
        }
    }
    if (j < n) {
        int64_t count = n - j;
        ht_vf xv = ht_vload_first(x + j, count), xn = ht_vload_first(x_next + j, count);
        HT_UNROLL(4)
        for (int q = 0; q < Q; q++) {
            ht_vf w = ht_sgd_rule_v(Wq[q] + j, bufq[q] ? bufq[q] + j : NULL,
                                    ht_vfma(d[q], xv, ht_vzero()), count, sgd, sgd_variant);
            /* Lanes past the row hold the rule applied to zeros, NaN when dy is infinite. */
            a[q] = ht_vfma(xn, ht_vkeep_first(w, count), a[q]);
        }
    }
    HT_UNROLL(4)
    for (int q = 0; q < Q; q++) acc[row[q]] = a[q];
}

/* sweep_rows for rows that the update leaves as they are (see leaves_zero_dy_rows): their
 * products only, nothing stored, so that their cache lines stay clean and are never written
 * back (a sweep that only reads rows takes about a third of the time of one that writes
 * them). A row that holds a NaN is the exception: its product is NaN, and the caller redoes
 * the row with sweep_rows. */
HT_INLINE void dot_rows(const float *W, const float *x_next, int64_t n, ht_vf *acc,
                        const int *row, const int Q) {
    const float *Wq[FUSED_ROWS];
    ht_vf a[FUSED_ROWS];
    HT_UNROLL(4)
    for (int q = 0; q < Q; q++) {
        Wq[q] = W + row[q] * n;
        a[q] = ht_vzero();
    }
    int64_t j = 0;
    for (; j + HT_VL <= n; j += HT_VL) {
        ht_vf xn = ht_vload(x_next + j);
        HT_UNROLL(4)
        for (int q = 0; q < Q; q++) a[q] = ht_vfma(xn, ht_vload(Wq[q] + j), a[q]);
    }
    if (j < n) {
        ht_vf xn = ht_vload_first(x_next + j, n - j);
        HT_UNROLL(4)
        for (int q = 0; q < Q; q++) a[q] = ht_vfma(xn, ht_vload_first(Wq[q] + j, n - j), a[q]);
    }
    HT_UNROLL(4)
    for (int q = 0; q < Q; q++) acc[row[q]] = a[q];
}

/* Rows row[0..count) by sweep_rows, or by dot_rows when `unchanged` (a row whose product is
 * NaN then redone by sweep_rows), in blocks of FUSED_ROWS, then one at a time. */
HT_INLINE void sweep_rows_of(float *W, float *buf, const float *dy, const float *x, int64_t n,
                             ht_sgd_params sgd, const int sgd_variant, const float *x_next,
                             ht_vf *acc, const int *row, int count, const int unchanged) {
    int at = 0;
    for (; at + FUSED_ROWS <= count; at += FUSED_ROWS)
        if (unchanged)
            dot_rows(W, x_next, n, acc, row + at, FUSED_ROWS);
        else
            sweep_rows(W, buf, dy, x, n, sgd, sgd_variant, x_next, acc, row + at, FUSED_ROWS);
    for (; at < count; at++)
        if (unchanged)
            dot_rows(W, x_next, n, acc, row + at, 1);
        else
            sweep_rows(W, buf, dy, x, n, sgd, sgd_variant, x_next, acc, row + at, 1);
    if (unchanged)
        for (int q = 0; q < count; q++)
            if (ht_vany_nan(acc[row[q]]))
                sweep_rows(W, buf, dy, x, n, sgd, sgd_variant, x_next, acc, row + q, 1);
}

/* One group of HT_VL rows (their products summed by one tree), `rows` of them from row i0,
 * last to first when `backwards`: those that the update changes, then, when
 * `zero_dy_unchanged`, those whose dy is zero (a ReLU's inactive units: about half). */
HT_INLINE void sweep_group(float *W, float *buf, const float *dy, const float *x, int64_t i0,
                           int rows, int64_t n, ht_sgd_params sgd, const int sgd_variant, float *y,
                           const float *x_next, int backwards, int zero_dy_unchanged) {
    int changing[HT_VL], unchanged[HT_VL], changing_rows = 0, unchanged_rows = 0;
    for (int u = 0; u < rows; u++) {
        int q = backwards ? rows - 1 - u : u;
        if (zero_dy_unchanged && dy[i0 + q] == 0.0f)
            unchanged[unchanged_rows++] = q;
        else
            changing[changing_rows++] = q;
    }
    ht_vf acc[HT_VL];
    for (int q = rows; q < HT_VL; q++) acc[q] = ht_vzero();
    float *Wg = W + i0 * n, *bufg = buf ? buf + i0 * n : NULL;
    sweep_rows_of(Wg, bufg, dy + i0, x, n, sgd, sgd_variant, x_next, acc, changing, changing_rows,
                  0);
    if (sgd_variant == 0) /* only then can zero_dy_unchanged hold: no such code in the others */
        sweep_rows_of(Wg, bufg, dy + i0, x, n, sgd, 0, x_next, acc, unchanged, unchanged_rows, 1);
    ht_vf sums = ht_vsum_each(acc);
    for (int q = 0; q < rows; q++) y[i0 + q] = sums[q];
}

/* Whether the update leaves each row whose dy is zero as it is, bit for bit, so that it need
 * not be written: with plain SGD (no momentum nor weight decay), x finite, and lr finite and
 * not negative, each element's gradient fma(±0, x, +0) is +0 and fma(+0, -lr, w) = w + -0
 * is w, unless w is a NaN (which dot_rows leaves to sweep_rows). */
static int leaves_zero_dy_rows(const float *x, int64_t n, ht_sgd_params sgd,
                               const int sgd_variant) {
    if (sgd_variant != 0 || !isfinite(sgd.lr) || signbit(sgd.lr)) return 0;
    ht_vf zeros = ht_vzero(); /* 0 * x is NaN where x is infinite or NaN */
    int64_t j = 0;
    for (; j + HT_VL <= n; j += HT_VL) zeros += ht_vload(x + j) * ht_vzero();
    if (j < n) zeros += ht_vload_first(x + j, n - j) * ht_vzero();
    return !ht_vany_nan(zeros);
}

HT_INLINE void rank1_sgd_then_dot(float *W, float *buf, const float *dy, const float *x,
                                  int64_t m, int64_t n, ht_sgd_params sgd, const int sgd_variant,
                                  float *y, const float *x_next, int backwards) {
    const int zero_dy_unchanged = leaves_zero_dy_rows(x, n, sgd, sgd_variant);
    const int64_t groups = (m + HT_VL - 1) / HT_VL;
    for (int64_t g = 0; g < groups; g++) {
        int64_t i0 = (backwards ? groups - 1 - g : g) * HT_VL;
        sweep_group(W, buf, dy, x, i0, (int)min64(HT_VL, m - i0), n, sgd, sgd_variant, y, x_next,
                    backwards, zero_dy_unchanged);
    }
}

/* Successive sweeps go in opposite directions: the rows a sweep ends with are still in L1
 * when the next one (the next training step) begins with them. */
static atomic_int sweep_backwards;

void ht_gemm_rank1_sgd_then_nt(float *W, float *buf, const float *dy, const float *x, int64_t m,
                               int64_t n, ht_sgd_params sgd, float *y, const float *x_next) {
    int backwards = atomic_fetch_xor_explicit(&sweep_backwards, 1, memory_order_relaxed);
    switch (ht_sgd_variant(sgd)) {
#define HT_RANK1_DOT(V)                                                                       \
    rank1_sgd_then_dot(W, buf, dy, x, m, n, sgd, (V), y, x_next, backwards);                  \
    break
        HT_SGD_VARIANTS(HT_RANK1_DOT)
#undef HT_RANK1_DOT
    }
}
