/* ht_conv.c: 2-d convolution (NCHW) as matrix products over im2col columns, one sample at a
 * time, on ht_gemm_nn (the engine that reads both operands along contiguous rows).
 *
 * A sample's columns are col[K,P]: row (ci,i,j) of K = c*kh*kw holds, for each of the
 * P = oh*ow output positions, the input x[ci, oh*sh - ph + i, ow*sw - pw + j] that the weight
 * W[:,ci,i,j] multiplies there (0 in the padding). Then
 *   y[oc,P]    = W[oc,K] col[K,P]
 *   dcol[K,P]  = W[oc,K]^T dy[oc,P], added back onto dx where im2col took each entry (col2im)
 *   dWT[K,oc] += col[K,P] dyT[P,oc], dy transposed first; dW += dWT^T at the end.
 * The forward splits a sample's output rows into one band per thread, each building its own
 * columns and product (so both stay in that core's cache); the gradients split building
 * columns, transposing and col2im (by input channel) over the threads, the products by the
 * engine. The engine computes every output element the same way whatever the split, so
 * results do not depend on the thread count. A 1x1 kernel with stride 1 and no padding needs
 * no columns: col is the sample itself (and dcol is dx). */
#include "ht_kernels.h"

#include "ht_gemm.h"
#include "ht_parallel.h"
#include "ht_simd.h"
#include "ht_vec.h"

static const ht_sgd_params no_sgd = {0};

/* Building or scattering columns goes to several threads from this many floats. */
#define PARALLEL_MIN_FLOATS (1 << 15)

typedef struct {
    int64_t c, h, w, oc, kh, kw, sh, sw, ph, pw; /* as the kernels' arguments */
    int64_t oh, ow;                              /* output height and width */
    int64_t k, p;                                /* col's rows (c*kh*kw) and columns (oh*ow) */
} conv_geometry;

static conv_geometry geometry(int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh, int64_t kw,
                              int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
    conv_geometry g = {c, h, w, oc, kh, kw, sh, sw, ph, pw, 0, 0, 0, 0};
    g.oh = (h + 2 * ph - kh) / sh + 1;
    g.ow = (w + 2 * pw - kw) / sw + 1;
    g.k = c * kh * kw;
    g.p = g.oh * g.ow;
    return g;
}

/* Whether col is the sample itself (x[c, h*w] with h*w == P). */
static int columns_are_input(const conv_geometry *g) {
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

/* The outputs o in [0, out) whose input o*stride - pad + tap lies in [0, size), as [*lo, *hi). */
static void inside(int64_t tap, int64_t stride, int64_t pad, int64_t size, int64_t out,
                   int64_t *lo, int64_t *hi) {
    int64_t first = pad - tap, last = size - 1 + pad - tap; /* o*stride in [first, last] */
    *lo = first > 0 ? (first + stride - 1) / stride : 0;
    *hi = last < 0 ? 0 : last / stride + 1;
    if (*hi > out) *hi = out;
    if (*lo > *hi) *lo = *hi;
}

/* ---- running rows of work over the threads ---- */

typedef void (*rows_fn)(const void *job, int64_t from, int64_t to);

typedef struct {
    rows_fn fn;
    const void *job;
    int64_t rows;
} rows_job;

static void rows_task(void *arg, int t, int tasks) {
    const rows_job *R = arg;
    R->fn(R->job, R->rows * t / tasks, R->rows * (t + 1) / tasks);
}

/* fn(job, from, to) over [0, rows) in parts, on several threads when there are
 * PARALLEL_MIN_FLOATS floats of work per thread. */
static void for_rows(rows_fn fn, const void *job, int64_t rows, int64_t floats_per_row) {
    int64_t threads = ht_get_num_threads(), worth = rows * floats_per_row / PARALLEL_MIN_FLOATS;
    if (threads > worth) threads = worth;
    if (threads > rows) threads = rows;
    if (threads <= 1) {
        fn(job, 0, rows);
        return;
    }
    rows_job R = {fn, job, rows};
    ht_parallel((int)threads, rows_task, &R);
}

/* ---- rows of floats ----
 * Whole-vector loads and stores only, the last vector of a row ending with the row: a masked
 * store's 64-byte footprint would make the next row's overlapping load wait for it. */

/* dst[0, count) = src[0, count) */
HT_INLINE void copy_floats(float *dst, const float *src, int64_t count) {
    if (count < HT_VL) {
        for (int64_t q = 0; q < count; q++) dst[q] = src[q];
        return;
    }
    for (int64_t q = 0; q + HT_VL < count; q += HT_VL) ht_vstore(dst + q, ht_vload(src + q));
    ht_vstore(dst + count - HT_VL, ht_vload(src + count - HT_VL));
}

/* dst[0, count) += src[0, count); the last vector is summed before any store reaches it. */
HT_INLINE void add_floats(float *dst, const float *src, int64_t count) {
    if (count < HT_VL) {
        for (int64_t q = 0; q < count; q++) dst[q] += src[q];
        return;
    }
    const int64_t last = count - HT_VL;
    const ht_vf tail = ht_vload(dst + last) + ht_vload(src + last);
    for (int64_t q = 0; q + HT_VL < count; q += HT_VL)
        ht_vstore(dst + q, ht_vload(dst + q) + ht_vload(src + q));
    ht_vstore(dst + last, tail);
}

HT_INLINE void zero_floats(float *dst, int64_t count) {
    for (int64_t q = 0; q < count; q++) dst[q] = 0.0f;
}

/* ---- im2col, col2im and transposing ---- */

typedef struct {
    const conv_geometry *g;
    float *col;       /* [K, positions]: output rows [oh0, oh1) (im2col), or all (col2im) */
    int64_t oh0, oh1;
    const float *x;   /* im2col: one sample [c, h, w] */
    float *dx;        /* col2im: one sample [c, h, w] */
    int accumulate;   /* col2im: add to dx, else overwrite it */
} columns_job;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* col rows (ci,i,j) in [from, to), for output rows [oh0, oh1). */
static void im2col_rows(const void *arg, int64_t from, int64_t to) {
    const columns_job *J = arg;
    const conv_geometry *g = J->g;
    for (int64_t r = from; r < to; r++) {
        const int64_t ci = r / (g->kh * g->kw), i = r / g->kw % g->kh, j = r % g->kw;
        const float *plane = J->x + ci * g->h * g->w;
        float *row = J->col + r * (J->oh1 - J->oh0) * g->ow; /* output row oh at oh - oh0 */
        int64_t oh_lo, oh_hi, ow_lo, ow_hi;
        inside(i, g->sh, g->ph, g->h, g->oh, &oh_lo, &oh_hi);
        inside(j, g->sw, g->pw, g->w, g->ow, &ow_lo, &ow_hi);
        oh_lo = min64(max64(oh_lo, J->oh0), J->oh1);
        oh_hi = max64(min64(oh_hi, J->oh1), oh_lo);
        zero_floats(row, (oh_lo - J->oh0) * g->ow);
        for (int64_t oh = oh_lo; oh < oh_hi; oh++) {
            float *out = row + (oh - J->oh0) * g->ow;
            const float *in = plane + (oh * g->sh - g->ph + i) * g->w + ow_lo * g->sw - g->pw + j;
            zero_floats(out, ow_lo);
            if (g->sw == 1)
                copy_floats(out + ow_lo, in, ow_hi - ow_lo);
            else
                for (int64_t ow = ow_lo; ow < ow_hi; ow++) out[ow] = in[(ow - ow_lo) * g->sw];
            zero_floats(out + ow_hi, g->ow - ow_hi);
        }
        zero_floats(row + (oh_hi - J->oh0) * g->ow, (J->oh1 - oh_hi) * g->ow);
    }
}

/* dx[ci] (= | +=) the col rows (ci,i,j) added back where im2col took them, for the channels
 * ci in [from, to); each channel's rows in order. */
static void col2im_channels(const void *arg, int64_t from, int64_t to) {
    const columns_job *J = arg;
    const conv_geometry *g = J->g;
    for (int64_t ci = from; ci < to; ci++) {
        float *plane = J->dx + ci * g->h * g->w;
        if (!J->accumulate) zero_floats(plane, g->h * g->w);
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                const float *row = J->col + ((ci * g->kh + i) * g->kw + j) * g->p;
                int64_t oh_lo, oh_hi, ow_lo, ow_hi;
                inside(i, g->sh, g->ph, g->h, g->oh, &oh_lo, &oh_hi);
                inside(j, g->sw, g->pw, g->w, g->ow, &ow_lo, &ow_hi);
                for (int64_t oh = oh_lo; oh < oh_hi; oh++) {
                    const float *in = row + oh * g->ow;
                    float *out = plane + (oh * g->sh - g->ph + i) * g->w + ow_lo * g->sw - g->pw + j;
                    if (g->sw == 1)
                        add_floats(out, in + ow_lo, ow_hi - ow_lo);
                    else
                        for (int64_t ow = ow_lo; ow < ow_hi; ow++)
                            out[(ow - ow_lo) * g->sw] += in[ow];
                }
            }
    }
}

/* ---- transposing ----
 * HT_VL x HT_VL blocks in registers: stage d swaps bit d of the row index with bit d of the
 * column index, rows i and i + d exchanging their lanes j with bit d set (lo) or clear (hi);
 * after every d in HT_VL/2, ..., 1 row i holds column i. */

#if HT_VL == 16
#define SWAP_LO_8 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define SWAP_HI_8 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define SWAP_LO_4 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define SWAP_HI_4 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define SWAP_LO_2 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define SWAP_HI_2 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define SWAP_LO_1 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define SWAP_HI_1 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31
#elif HT_VL == 8
#define SWAP_LO_4 0, 1, 2, 3, 8, 9, 10, 11
#define SWAP_HI_4 4, 5, 6, 7, 12, 13, 14, 15
#define SWAP_LO_2 0, 1, 8, 9, 4, 5, 12, 13
#define SWAP_HI_2 2, 3, 10, 11, 6, 7, 14, 15
#define SWAP_LO_1 0, 8, 2, 10, 4, 12, 6, 14
#define SWAP_HI_1 1, 9, 3, 11, 5, 13, 7, 15
#else
#define SWAP_LO_2 0, 1, 4, 5
#define SWAP_HI_2 2, 3, 6, 7
#define SWAP_LO_1 0, 4, 2, 6
#define SWAP_HI_1 1, 5, 3, 7
#endif

#define SWAP_STAGE(d)                                                                       \
    HT_UNROLL(16)                                                                           \
    for (int i = 0; i < HT_VL; i++)                                                         \
        if (!(i & (d))) {                                                                   \
            const ht_vf a = r[i], b = r[i + (d)];                                           \
            r[i] = HT_SHUFFLE2(a, b, SWAP_LO_##d);                                          \
            r[i + (d)] = HT_SHUFFLE2(a, b, SWAP_HI_##d);                                    \
        }

/* out[j * ld_out + i] = in[i * ld_in + j] for i, j < HT_VL */
HT_INLINE void transpose_block(float *out, int64_t ld_out, const float *in, int64_t ld_in) {
    ht_vf r[HT_VL];
    HT_UNROLL(16)
    for (int i = 0; i < HT_VL; i++) r[i] = ht_vload(in + i * ld_in);
#if HT_VL == 16
    SWAP_STAGE(8)
#endif
#if HT_VL >= 8
    SWAP_STAGE(4)
#endif
    SWAP_STAGE(2)
    SWAP_STAGE(1)
    HT_UNROLL(16)
    for (int i = 0; i < HT_VL; i++) ht_vstore(out + i * ld_out, r[i]);
}

typedef struct {
    float *out;      /* [cols, rows] */
    const float *in; /* [rows, cols] */
    int64_t rows, cols;
} transpose_job;

/* The columns of `in` (rows of out) in blocks [from, to) of HT_VL; partial blocks in scalars. */
static void transpose_columns(const void *arg, int64_t from, int64_t to) {
    const transpose_job *T = arg;
    const int64_t rows = T->rows, cols = T->cols;
    for (int64_t c0 = from * HT_VL; c0 < to * HT_VL && c0 < cols; c0 += HT_VL) {
        int64_t r0 = 0;
        if (c0 + HT_VL <= cols)
            for (; r0 + HT_VL <= rows; r0 += HT_VL)
                transpose_block(T->out + c0 * rows + r0, rows, T->in + r0 * cols + c0, cols);
        for (int64_t c = c0; c < c0 + HT_VL && c < cols; c++)
            for (int64_t r = c0 + HT_VL <= cols ? r0 : 0; r < rows; r++)
                T->out[c * rows + r] = T->in[r * cols + c];
    }
}

/* ---- the kernels ---- */

int64_t ht_conv2d_workspace(int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh, int64_t kw,
                            int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
    conv_geometry g = geometry(c, h, w, oc, kh, kw, sh, sw, ph, pw);
    /* col (or dcol), then the forward's products or ht_conv2d_bwd_weight's dyT, then its dWT */
    return g.k * g.p + g.p * g.oc + g.k * g.oc;
}

/* A thread is worth its hand-over from this many multiply-adds (as the engine's products). */
#define PARALLEL_MIN_FMAS (1 << 17)

typedef struct {
    const conv_geometry *g;
    const float *x, *W, *b; /* one sample's x */
    float *y;               /* its y */
    float *col, *out;       /* the bands' columns [K, P] and products [oc, P], band by band */
} forward_job;

/* Output rows [oh0, oh1) of band t: columns, product, then into y (+ bias). */
static void forward_band(void *arg, int t, int bands) {
    const forward_job *F = arg;
    const conv_geometry *g = F->g;
    const int64_t oh0 = g->oh * t / bands, oh1 = g->oh * (t + 1) / bands;
    const int64_t first = oh0 * g->ow, positions = (oh1 - oh0) * g->ow;
    const float *cols = F->x; /* the columns of a whole sample may be the sample itself */
    if (!columns_are_input(g)) {
        columns_job J = {g, F->col + g->k * first, oh0, oh1, F->x, NULL, 0};
        im2col_rows(&J, 0, g->k);
        cols = J.col;
    }
    /* one band writes y directly; several write their rows of y from their own products */
    float *product = bands == 1 ? F->y : F->out + g->oc * first;
    ht_gemm_nn(product, NULL, F->W, g->k, 1, cols, g->oc, positions, g->k, g->oc, HT_EPI_STORE,
               no_sgd);
    for (int64_t o = 0; o < g->oc; o++) {
        float *row = F->y + o * g->p + first;
        const float *in = product + o * positions;
        const float bias = F->b ? F->b[o] : 0.0f;
        if (F->b)
            HT_FOR(q, positions, row[q] = in[q] + bias);
        else if (row != in)
            copy_floats(row, in, positions);
    }
}

/* One band per thread, each of a whole number of output rows and worth a thread. */
static int64_t forward_bands(const conv_geometry *g) {
    if (columns_are_input(g)) return 1; /* the engine splits the product */
    const int64_t worth = g->oc * g->p * g->k / PARALLEL_MIN_FMAS;
    return max64(1, min64(min64(ht_get_num_threads(), g->oh), worth));
}

void ht_conv2d_fwd(float *y, const float *x, const float *W, const float *b, float *workspace,
                   int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh, int64_t kw,
                   int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
    conv_geometry g = geometry(c, h, w, oc, kh, kw, sh, sw, ph, pw);
    const int64_t bands = forward_bands(&g);
    for (int64_t s = 0; s < n; s++) {
        forward_job F = {&g, x + s * c * h * w, W, b, y + s * oc * g.p, workspace,
                         workspace + g.k * g.p};
        if (bands == 1)
            forward_band(&F, 0, 1);
        else
            ht_parallel((int)bands, forward_band, &F);
    }
}

void ht_conv2d_bwd_input(float *dx, const float *dy, const float *W, float *workspace, int64_t n,
                         int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh, int64_t kw,
                         int64_t sh, int64_t sw, int64_t ph, int64_t pw, int accumulate) {
    conv_geometry g = geometry(c, h, w, oc, kh, kw, sh, sw, ph, pw);
    const int direct = columns_are_input(&g);
    for (int64_t s = 0; s < n; s++) {
        float *dxs = dx + s * c * h * w;
        float *dcol = direct ? dxs : workspace;
        ht_gemm_nn(dcol, NULL, W, 1, g.k, dy + s * oc * g.p, g.k, g.p, oc, g.k,
                   direct && accumulate ? HT_EPI_ADD : HT_EPI_STORE, no_sgd);
        if (direct) continue;
        columns_job J = {&g, dcol, 0, g.oh, NULL, dxs, accumulate};
        for_rows(col2im_channels, &J, c, kh * kw * g.p);
    }
}

/* The operands of a sample's weight gradient: its columns and dy^T, built side by side. */
typedef struct {
    columns_job columns; /* unused when the columns are the sample itself */
    transpose_job dyT;
    int build_columns;
} weight_operands_job;

static void weight_operands_task(void *arg, int t, int tasks) {
    const weight_operands_job *J = arg;
    const conv_geometry *g = J->columns.g;
    const int64_t blocks = (g->p + HT_VL - 1) / HT_VL;
    if (J->build_columns) im2col_rows(&J->columns, g->k * t / tasks, g->k * (t + 1) / tasks);
    transpose_columns(&J->dyT, blocks * t / tasks, blocks * (t + 1) / tasks);
}

void ht_conv2d_bwd_weight(float *dW, const float *dy, const float *x, float *workspace, int64_t n,
                          int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh, int64_t kw,
                          int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
    conv_geometry g = geometry(c, h, w, oc, kh, kw, sh, sw, ph, pw);
    float *col = workspace, *dyT = col + g.k * g.p, *dWT = dyT + g.p * oc;
    const int build_columns = !columns_are_input(&g);
    const int64_t floats = (build_columns ? g.k * g.p : 0) + g.p * oc;
    const int tasks = (int)max64(1, min64(ht_get_num_threads(), floats / PARALLEL_MIN_FLOATS));
    zero_floats(dWT, g.k * oc);
    for (int64_t s = 0; s < n; s++) {
        const float *xs = x + s * c * h * w;
        weight_operands_job J = {{&g, col, 0, g.oh, xs, NULL, 0},
                                 {dyT, dy + s * oc * g.p, oc, g.p}, build_columns};
        ht_parallel(tasks, weight_operands_task, &J);
        ht_gemm_nn(dWT, NULL, build_columns ? col : xs, g.p, 1, dyT, g.k, oc, g.p, g.k,
                   HT_EPI_ADD, no_sgd);
    }
    for (int64_t o = 0; o < oc; o++)
        for (int64_t r = 0; r < g.k; r++) dW[o * g.k + r] += dWT[r * oc + o];
}

/* Each channel's sum in HT_VL partial sums (planes in order, a vector of each at a time), then
 * the lanes in order. */
void ht_conv2d_bwd_bias(float *db, const float *dy, int64_t n, int64_t oc, int64_t oh, int64_t ow) {
    const int64_t p = oh * ow;
    for (int64_t o = 0; o < oc; o++) {
        ht_vf acc = ht_vzero();
        for (int64_t s = 0; s < n; s++) {
            const float *plane = dy + (s * oc + o) * p;
            int64_t q = 0;
            for (; q + HT_VL <= p; q += HT_VL) acc += ht_vload(plane + q);
            if (q < p) acc += ht_vload_first(plane + q, p - q);
        }
        float sum = 0.0f;
        for (int l = 0; l < HT_VL; l++) sum += acc[l];
        db[o] += sum;
    }
}
