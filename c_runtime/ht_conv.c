/* ht_conv.c: 2-d convolution (NCHW) as matrix products over im2col columns, on ht_gemm_nn
 * (the engine that reads both operands along contiguous rows).
 *
 * The columns of a sample are col[K,P]: row (ci,i,j) of K = c*kh*kw holds, for each of the
 * P = oh*ow output positions, the input x[ci, oh*sh - ph + i, ow*sw - pw + j] that the weight
 * W[:,ci,i,j] multiplies there (0 in the padding). Then
 *   y[oc,P]    = W[oc,K] col[K,P]
 *   dcol[K,P]  = W[oc,K]^T dy[oc,P], added back onto dx where im2col took each entry (col2im)
 *   dWT[K,oc] += col[K,P] dyT[P,oc], dy transposed; dW += dWT^T at the end; or, with at
 *   least a vector of channels, dW'[oc,K'] += dy[oc,P] colT[P,K'] over the columns transposed,
 *   their taps in the order (i,j,ci) (see "the weight gradient over channels-last columns").
 * The columns are built a block of positions at a time (a whole sample's of up to LONG_BLOCK
 * positions), in the scratch of the task that uses them (its lane of the workspace): for the
 * forward and the input gradient in panels of the engine's width (each panel then a
 * contiguous B that the engine's tiles stream), for the weight gradient row-major (the
 * product's k runs along the block).
 *
 * Threads: the forward splits the blocks of all samples over the tasks, the input gradient
 * the samples (a sample's blocks add into the same dx), the weight gradient fixed groups of
 * samples, each summed into its own partial gradient; the partials are then added in order.
 * The blocks, the groups and the engine's arithmetic do not depend on the thread count, so
 * neither do the results, bit for bit. */
#include "ht_kernels.h"

#include <stdatomic.h>

#include "ht_gemm.h"
#include "ht_pool.h"
#include "ht_parallel.h"
#include "ht_simd.h"
#include "ht_vec.h"

static const ht_sgd_params no_sgd = {0};

/* The most tasks a kernel runs at once: the workspace holds a lane of scratch for each. */
#define LANES 8
/* Positions of a block of columns: at most LONG_BLOCK, a whole sample's in near-equal blocks
 * (rounded up to whole vectors); or, when a forward has too few of those to keep every thread
 * busy, BLOCK (one panel of the engine), so that even one sample's blocks go to all. */
#define LONG_BLOCK 1024
#define BLOCK HT_GEMM_NN_PANEL
/* The weight gradient's samples go in at most this many groups (fewer when the batch is
 * smaller, or when the partial gradients would take more than WEIGHT_PARTIAL_FLOATS). */
#define WEIGHT_GROUPS 16
#define WEIGHT_PARTIAL_FLOATS (1 << 21)
/* A task is worth its hand-over from this many multiply-adds (a few microseconds). */
#define PARALLEL_MIN_FMAS (1 << 17)

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

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* The outputs o in [0, out) whose input o*stride - pad + tap lies in [0, size), as [*lo, *hi). */
static void inside(int64_t tap, int64_t stride, int64_t pad, int64_t size, int64_t out,
                   int64_t *lo, int64_t *hi) {
    int64_t first = pad - tap, last = size - 1 + pad - tap; /* o*stride in [first, last] */
    *lo = first > 0 ? (first + stride - 1) / stride : 0;
    *hi = last < 0 ? 0 : last / stride + 1;
    if (*hi > out) *hi = out;
    if (*lo > *hi) *lo = *hi;
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

/* relu as ht_relu_fwd computes it: x < 0 ? 0 : x (a NaN fails the comparison and stays, -0.0
 * stays -0.0) */
HT_INLINE ht_vf relu_lanes(ht_vf v) { return (ht_vf)((ht_vi)v & ~(ht_vi)(v < ht_vzero())); }

/* dst[0, count) = src[0, count) (+ *bias unless bias is NULL), relu'd when `relu`: a row of a
 * convolution's outputs. */
HT_INLINE void write_outputs(float *dst, const float *src, const float *bias, int relu,
                            int64_t count) {
    if (count < HT_VL) {
        for (int64_t q = 0; q < count; q++) {
            const float v = bias ? src[q] + *bias : src[q];
            dst[q] = relu && v < 0.0f ? 0.0f : v;
        }
        return;
    }
    const ht_vf b = ht_vsplat(bias ? *bias : 0.0f);
    for (int64_t q = 0;; q += HT_VL) {
        if (q + HT_VL > count) q = count - HT_VL; /* the last vector ends with the row */
        ht_vf v = ht_vload(src + q);
        if (bias) v += b;
        if (relu) v = relu_lanes(v);
        ht_vstore(dst + q, v);
        if (q + HT_VL == count) break;
    }
}

HT_INLINE void zero_floats(float *dst, int64_t count) {
    for (int64_t q = 0; q < count; q++) dst[q] = 0.0f;
}

/* ---- blocks of columns ----
 * A block holds the columns of the positions [q0, q0 + width) of one sample, in panels of
 * `panel` positions (the last may have fewer), one after the other: row r = (ci,i,j) of K of
 * panel p at col + p * panel * K + r * (that panel's positions). With panels of the engine's
 * width, each panel is a contiguous B for a product; with one panel, the block is row-major
 * [K, width]. Positions run along output rows: a block covers parts of some (segments). */

/* The part of an output row in one panel of a block: output columns [a, b) of output row oh;
 * entry (r, o) of the columns at col[at + r * stride + o - a]. */
typedef struct {
    int64_t oh, a, b, at, stride;
} segment;

/* The segments of positions [q0, q0 + width) in panels of `panel`, in order; returns their
 * count (at most width: each holds a position at least). */
static int64_t segments_of(segment *seg, const conv_geometry *g, int64_t q0, int64_t width,
                           int64_t panel) {
    int64_t count = 0;
    for (int64_t q = q0; q < q0 + width; count++) {
        const int64_t p = (q - q0) / panel, in_panel = (q - q0) % panel;
        const int64_t positions = min64(panel, width - p * panel); /* of panel p */
        const int64_t oh = q / g->ow, a = q % g->ow;
        const int64_t b = min64(g->ow, a + positions - in_panel);
        seg[count] = (segment){oh, a, b, p * panel * g->k + in_panel, positions};
        q += b - a;
    }
    return count;
}

/* The columns [lo, hi) of a segment whose input lies inside the plane, for tap (i, j) whose
 * inside columns are [jlo, jhi); the input row in *ih (lo == hi in the padding rows). */
HT_INLINE void segment_inside(const conv_geometry *g, const segment *s, int64_t i, int64_t jlo,
                              int64_t jhi, int64_t *ih, int64_t *lo, int64_t *hi) {
    *ih = s->oh * g->sh - g->ph + i;
    *lo = min64(max64(jlo, s->a), s->b);
    *hi = max64(min64(jhi, s->b), *lo);
    if (*ih < 0 || *ih >= g->h) *hi = *lo;
}

/* The body for each tap (ci, i, j), row r of the columns, whose inside output columns (those
 * whose input column lies in the plane) are [jlo, jhi). */
#define FOR_TAPS(g, ...)                                                                     \
    for (int64_t ci = 0, r = 0; ci < (g)->c; ci++)                                           \
        for (int64_t i = 0; i < (g)->kh; i++)                                                \
            for (int64_t j = 0; j < (g)->kw; j++, r++) {                                     \
                int64_t jlo, jhi;                                                            \
                inside(j, (g)->sw, (g)->pw, (g)->w, (g)->ow, &jlo, &jhi);                    \
                __VA_ARGS__;                                                                 \
            }

/* col = the columns of the block of segments `seg` (`count` of them) of the sample
 * x[c, h, w]: what each tap meets at each position, 0 in the padding. */
static void im2col_block(float *col, const float *x, const conv_geometry *g, const segment *seg,
                         int64_t count) {
    FOR_TAPS(g, {
        const float *plane = x + ci * g->h * g->w;
        for (int64_t t = 0; t < count; t++) {
            const segment *s = &seg[t];
            int64_t ih, lo, hi;
            segment_inside(g, s, i, jlo, jhi, &ih, &lo, &hi);
            float *out = col + s->at + r * s->stride - s->a; /* output column o at out[o] */
            zero_floats(out + s->a, lo - s->a);
            if (lo < hi) {
                const float *in = plane + ih * g->w + lo * g->sw - g->pw + j;
                if (g->sw == 1)
                    copy_floats(out + lo, in, hi - lo);
                else
                    for (int64_t o = lo; o < hi; o++) out[o] = in[(o - lo) * g->sw];
            }
            zero_floats(out + hi, s->b - hi);
        }
    })
}

/* dx[c, h, w] += the block col of segments `seg`, each entry where im2col_block took it; rows
 * in order, each row's segments in order. */
static void col2im_block(float *dx, const float *col, const conv_geometry *g, const segment *seg,
                         int64_t count) {
    FOR_TAPS(g, {
        float *plane = dx + ci * g->h * g->w;
        for (int64_t t = 0; t < count; t++) {
            const segment *s = &seg[t];
            int64_t ih, lo, hi;
            segment_inside(g, s, i, jlo, jhi, &ih, &lo, &hi);
            if (lo == hi) continue;
            const float *in = col + s->at + r * s->stride - s->a; /* output column o at in[o] */
            float *out = plane + ih * g->w + lo * g->sw - g->pw + j;
            if (g->sw == 1)
                add_floats(out, in + lo, hi - lo);
            else
                for (int64_t o = lo; o < hi; o++) out[(o - lo) * g->sw] += in[o];
        }
    })
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

/* out[c * rows + r] = in[r * ld_in + c] for r < rows, c < cols: blocks of HT_VL x HT_VL in
 * registers, the edges in scalars. */
static void transpose(float *out, const float *in, int64_t rows, int64_t cols, int64_t ld_in) {
    int64_t c0 = 0, r0 = 0;
    for (; c0 + HT_VL <= cols; c0 += HT_VL)
        for (r0 = 0; r0 + HT_VL <= rows; r0 += HT_VL)
            transpose_block(out + c0 * rows + r0, rows, in + r0 * ld_in + c0, ld_in);
    for (int64_t c = 0; c < cols; c++) /* the rows past the blocks, then the columns past them */
        for (int64_t r = c < c0 ? r0 : 0; r < rows; r++) out[c * rows + r] = in[r * ld_in + c];
}

/* ---- running tasks, each with a lane of the workspace ----
 * The workspace: LANES lanes, each a block of columns [K, lane_positions] and a block of the
 * other operand or of the product [oc, lane_positions] (or its transpose); then the weight
 * gradient's partial gradients [K, oc], one per group. */

/* The positions of each block of a sample but the last (which may have fewer): the sample's
 * in near-equal blocks of at most LONG_BLOCK, or BLOCK. */
static int64_t block_width(const conv_geometry *g, int long_blocks) {
    if (!long_blocks) return BLOCK;
    const int64_t blocks = max64(1, (g->p + LONG_BLOCK - 1) / LONG_BLOCK);
    return min64(LONG_BLOCK, ((g->p + blocks - 1) / blocks + HT_VL - 1) / HT_VL * HT_VL);
}

/* The positions a lane holds: those of the widest block. */
static int64_t lane_positions(const conv_geometry *g) {
    return max64(block_width(g, 1), block_width(g, 0));
}

/* Whether the weight gradient takes channels-last columns (see "the weight gradient over
 * channels-last columns"): with at least a vector of channels, whose runs are whole vectors. */
static int channels_last(const conv_geometry *g) { return g->c >= HT_VL; }

/* A lane: the columns [K, lane_positions] and the other operand [oc, lane_positions]; for the
 * weight gradient over channels-last columns, then a sample channels-last [h*w, c]. */
static int64_t lane_floats(const conv_geometry *g) {
    return (g->k + g->oc) * lane_positions(g) + (channels_last(g) ? g->c * g->h * g->w : 0);
}

/* The groups of the weight gradient for a batch of n (n = 0: for any batch). */
static int64_t weight_groups(const conv_geometry *g, int64_t n) {
    const int64_t fit = max64(1, WEIGHT_PARTIAL_FLOATS / max64(1, g->k * g->oc));
    const int64_t groups = min64(WEIGHT_GROUPS, fit);
    return n > 0 ? min64(groups, n) : groups;
}

/* The floats of the workspace the plain kernels use: the lanes, then the partial gradients. */
static int64_t conv_floats(const conv_geometry *g) {
    return LANES * lane_floats(g) + weight_groups(g, 0) * g->k * g->oc;
}

int64_t ht_conv2d_workspace(int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh, int64_t kw,
                            int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
    conv_geometry g = geometry(c, h, w, oc, kh, kw, sh, sw, ph, pw);
    return conv_floats(&g);
}

/* The gradient at the outputs of a convolution that relu and max pooling follow, as the
 * pooling's: gy and y (relu'd) the pooled ones, idx the maxima's (windows kh x kw at stride
 * (sh, sw)). */
typedef struct {
    const float *gy, *y;
    const int64_t *idx;
    int64_t kh, kw, sh, sw;
} pooled_grad;

typedef struct {
    conv_geometry g;
    float *out;                   /* y, dx or dW */
    const float *x, *W, *b, *dy;  /* as the kernel has them (NULL otherwise) */
    float *workspace;
    int64_t n, units;             /* samples; the units of work the tasks share */
    atomic_llong next;            /* the first unit no task has claimed */
    int64_t width;                /* the positions of a block (block_width) */
    int accumulate;               /* the input gradient: add to dx, else overwrite it */
    const int64_t *offsets;       /* the forward without columns: where their rows start */
    void (*unit)(const void *job, int lane, float *col, float *other, int64_t unit);
    int relu;                     /* the forward: relu'd outputs */
    const pooled_grad *pooled;    /* the gradients: dy as a pooling's gradient (else NULL) */
} conv_job;

/* Task t claims units one at a time until none is left, working in lane t: a thread that
 * starts late (on a busy machine) takes what is left, and one that never starts holds
 * nothing up. Which task runs a unit does not change its result. */
static void conv_task(void *arg, int t, int tasks) {
    conv_job *J = arg;
    (void)tasks;
    float *col = J->workspace + t * lane_floats(&J->g);
    float *other = col + J->g.k * lane_positions(&J->g);
    for (int64_t u; (u = atomic_fetch_add(&J->next, 1)) < J->units;) J->unit(J, t, col, other, u);
}

/* J's units over up to LANES tasks, as many as the threads and as are worth it for
 * `fmas` multiply-adds in all. */
static void run_units(conv_job *J, double fmas) {
    atomic_init(&J->next, 0);
    int64_t tasks = min64(min64(ht_get_num_threads(), LANES), J->units);
    tasks = min64(tasks, max64(1, (int64_t)(fmas / PARALLEL_MIN_FMAS)));
    if (tasks <= 1)
        conv_task(J, 0, 1);
    else
        ht_parallel((int)tasks, conv_task, J);
}

/* ---- the kernels ---- */

/* Unit: a block of a sample (units = n * blocks), its columns in panels of BLOCK, a product
 * for each, in y (+ bias). */
static void forward_block(const void *job, int lane, float *col, float *product, int64_t unit) {
    const conv_job *J = job;
    const conv_geometry *g = &J->g;
    const int64_t blocks = (g->p + J->width - 1) / J->width, s = unit / blocks;
    const int64_t q0 = unit % blocks * J->width, width = min64(J->width, g->p - q0);
    segment seg[LONG_BLOCK];
    im2col_block(col, J->x + s * g->c * g->h * g->w, g, seg,
                 segments_of(seg, g, q0, width, BLOCK));
    for (int64_t p0 = 0; p0 < width; p0 += BLOCK) {
        const int64_t positions = min64(BLOCK, width - p0);
        ht_gemm_nn(product, NULL, J->W, g->k, 1, col + p0 * g->k, g->oc, positions, g->k, 1,
                   HT_EPI_STORE, no_sgd);
        for (int64_t o = 0; o < g->oc; o++)
            write_outputs(J->out + (s * g->oc + o) * g->p + q0 + p0, product + o * positions,
                          J->b ? J->b + o : NULL, J->relu, positions);
    }
}

/* ---- the forward without columns ----
 * At stride 1 without padding, tap r = (ci,i,j) meets x[ci, oh + i, ow + j] at output (oh, ow):
 * x[offset(r) + oh*w + ow], offset(r) = (ci*h + i)*w + j. Over the positions q = oh*w + ow of
 * a grid as wide as the input (its last w - ow columns are not outputs: computed and dropped),
 * row r of the columns is x + offset(r) + q, contiguous in q: the engine reads B's rows there
 * (ht_gemm_nn_rows), and no columns are built. Each output is the same sum as with them. */

/* The most taps the offsets' table (on the stack) holds; more take the columns. */
#define IMPLICIT_MOST_K 4096

static int without_columns(const conv_geometry *g) {
    return g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0 && g->k <= IMPLICIT_MOST_K;
}

/* The grid's positions, up to its last output. */
static int64_t grid_positions(const conv_geometry *g) { return (g->oh - 1) * g->w + g->ow; }

/* Unit: BLOCK positions of the grid of a sample (units = n * panels), a product, its outputs
 * in y (+ bias). */
static void grid_panel(const void *job, int lane, float *col, float *product, int64_t unit) {
    const conv_job *J = job;
    const conv_geometry *g = &J->g;
    const int64_t grid = grid_positions(g), panels = (grid + BLOCK - 1) / BLOCK;
    const int64_t s = unit / panels, q0 = unit % panels * BLOCK, width = min64(BLOCK, grid - q0);
    (void)col;
    ht_gemm_nn_rows(product, J->W, g->k, 1, J->x + s * g->c * g->h * g->w + q0, J->offsets, g->oc,
                    width, g->k);
    for (int64_t q = q0; q < q0 + width;) {
        const int64_t oh = q / g->w, a = q % g->w, b = min64(g->w, a + q0 + width - q);
        for (int64_t o = 0; o < g->oc && a < g->ow; o++) {
            float *out = J->out + (s * g->oc + o) * g->p + oh * g->ow + a;
            const float *in = product + o * width + q - q0;
            write_outputs(out, in, J->b ? J->b + o : NULL, J->relu, min64(b, g->ow) - a);
        }
        q += b - a;
    }
}

static void forward_without_columns(conv_job *J) {
    const conv_geometry *g = &J->g;
    int64_t offsets[IMPLICIT_MOST_K];
    for (int64_t ci = 0, r = 0; ci < g->c; ci++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) offsets[r++] = (ci * g->h + i) * g->w + j;
    J->offsets = offsets;
    J->unit = grid_panel;
    J->units = J->n * ((grid_positions(g) + BLOCK - 1) / BLOCK);
    run_units(J, (double)J->n * grid_positions(g) * g->k * g->oc);
}

static void conv_forward(float *y, const float *x, const float *W, const float *b,
                         float *workspace, int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc,
                         int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                         int relu) {
    conv_job J = {geometry(c, h, w, oc, kh, kw, sh, sw, ph, pw), y, x, W, b, NULL, workspace,
                  n, 0, 0, 0, 0, NULL, forward_block, relu, NULL};
    if (without_columns(&J.g)) {
        forward_without_columns(&J);
        return;
    }
    J.width = block_width(&J.g, 1);
    if (n * ((J.g.p + J.width - 1) / J.width) < 2 * ht_get_num_threads()) /* too few for all */
        J.width = block_width(&J.g, 0);
    J.units = n * ((J.g.p + J.width - 1) / J.width);
    run_units(&J, (double)n * J.g.p * J.g.k * oc);
}

void ht_conv2d_fwd(float *y, const float *x, const float *W, const float *b, float *workspace,
                   int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh, int64_t kw,
                   int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
    conv_forward(y, x, W, b, workspace, n, c, h, w, oc, kh, kw, sh, sw, ph, pw, 0);
}

void ht_conv2d_relu_fwd(float *y, const float *x, const float *W, const float *b,
                        float *workspace, int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc,
                        int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
    conv_forward(y, x, W, b, workspace, n, c, h, w, oc, kh, kw, sh, sw, ph, pw, 1);
}

/* ---- a convolution, relu and max pooling in one ----
 * The forward, sample by sample: the sample's convolution (as ht_conv2d_fwd computes it) after
 * the plain workspace, still in cache for its pooling (as ht_max_pool2d_fwd's) and relu (as
 * ht_relu_fwd's) there. The gradients: each sample's dy spread from the pooled gradient into
 * its task's place after the plain workspace (sample_dy). The batch's full-size outputs and
 * their gradient are never written to memory nor read back. */

/* The floats of a sample's max pooling (windows kh x kw at stride (sh, sw)) of g's outputs. */
static int64_t pooled_floats(const conv_geometry *g, int64_t kh, int64_t kw, int64_t sh,
                             int64_t sw) {
    return g->oc * ((g->oh - kh) / sh + 1) * ((g->ow - kw) / sw + 1);
}

int64_t ht_conv2d_pool_workspace(int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh,
                                 int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
    const conv_geometry g = geometry(c, h, w, oc, kh, kw, sh, sw, ph, pw);
    return conv_floats(&g) + LANES * g.oc * g.p;
}

void ht_conv2d_relu_max_pool2d_fwd(float *y, int64_t *idx, const float *x, const float *W,
                                   const float *b, float *workspace, int64_t n, int64_t c,
                                   int64_t h, int64_t w, int64_t oc, int64_t kh, int64_t kw,
                                   int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t pkh,
                                   int64_t pkw, int64_t psh, int64_t psw) {
    const conv_geometry g = geometry(c, h, w, oc, kh, kw, sh, sw, ph, pw);
    const int64_t pooled = pooled_floats(&g, pkh, pkw, psh, psw);
    float *conv_out = workspace + conv_floats(&g);
    for (int64_t s = 0; s < n; s++) {
        conv_forward(conv_out, x + s * c * h * w, W, b, workspace, 1, c, h, w, oc, kh, kw, sh, sw,
                     ph, pw, 0);
        ht_max_pool2d_fwd(y + s * pooled, idx + s * pooled, conv_out, oc, g.oh, g.ow, pkh, pkw,
                          psh, psw);
        ht_relu_fwd(y + s * pooled, y + s * pooled, pooled);
    }
}

/* Sample s's dy[oc, P]: J->dy's, or the pooled gradient's spread into lane `lane`'s place
 * after the plain workspace (as ht_relu_max_pool2d_bwd spreads it), still in cache for its
 * products; the batch's full-size gradient is never written. */
static const float *sample_dy(const conv_job *J, int lane, int64_t s) {
    const conv_geometry *g = &J->g;
    const pooled_grad *P = J->pooled;
    if (!P) return J->dy + s * g->oc * g->p;
    float *dy = J->workspace + conv_floats(g) + lane * g->oc * g->p;
    const int64_t pooled = pooled_floats(g, P->kh, P->kw, P->sh, P->sw);
    ht_relu_max_pool2d_bwd_planes(dy, P->gy + s * pooled, P->y + s * pooled, P->idx + s * pooled,
                                  g->oc, g->oh, g->ow, P->kh, P->kw, P->sh, P->sw);
    return dy;
}

/* Unit: a sample, its blocks in order, each in panels of BLOCK: dy's panel (copied
 * contiguous), its columns' gradient; the block's then added back into dx. */
static void input_sample(const void *job, int lane, float *dcol, float *dy_panel, int64_t s) {
    const conv_job *J = job;
    const conv_geometry *g = &J->g;
    float *dx = J->out + s * g->c * g->h * g->w;
    const float *dy = sample_dy(J, lane, s);
    if (!J->accumulate) zero_floats(dx, g->c * g->h * g->w);
    for (int64_t q0 = 0; q0 < g->p; q0 += J->width) {
        const int64_t width = min64(J->width, g->p - q0);
        for (int64_t p0 = 0; p0 < width; p0 += BLOCK) {
            const int64_t positions = min64(BLOCK, width - p0);
            for (int64_t o = 0; o < g->oc; o++)
                copy_floats(dy_panel + o * positions, dy + o * g->p + q0 + p0, positions);
            ht_gemm_nn(dcol + p0 * g->k, NULL, J->W, 1, g->k, dy_panel, g->k, positions, g->oc,
                       1, HT_EPI_STORE, no_sgd);
        }
        segment seg[LONG_BLOCK];
        col2im_block(dx, dcol, g, seg, segments_of(seg, g, q0, width, BLOCK));
    }
}

static void backward_input(float *dx, const float *dy, const pooled_grad *pooled,
                           const float *W, float *workspace, int64_t n, int64_t c, int64_t h,
                           int64_t w, int64_t oc, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                           int64_t ph, int64_t pw, int accumulate) {
    conv_job J = {geometry(c, h, w, oc, kh, kw, sh, sw, ph, pw), dx, NULL, W, NULL, dy, workspace,
                  n, n, 0, 0, accumulate, NULL, input_sample, 0, pooled};
    J.width = block_width(&J.g, 1);
    run_units(&J, (double)n * J.g.p * J.g.k * oc);
}

void ht_conv2d_bwd_input(float *dx, const float *dy, const float *W, float *workspace, int64_t n,
                         int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh, int64_t kw,
                         int64_t sh, int64_t sw, int64_t ph, int64_t pw, int accumulate) {
    backward_input(dx, dy, NULL, W, workspace, n, c, h, w, oc, kh, kw, sh, sw, ph, pw, accumulate);
}

void ht_conv2d_pool_bwd_input(float *dx, const float *gy, const float *y, const int64_t *idx,
                              const float *W, float *workspace, int64_t n, int64_t c, int64_t h,
                              int64_t w, int64_t oc, int64_t kh, int64_t kw, int64_t sh,
                              int64_t sw, int64_t ph, int64_t pw, int64_t pkh, int64_t pkw,
                              int64_t psh, int64_t psw, int accumulate) {
    const pooled_grad pooled = {gy, y, idx, pkh, pkw, psh, psw};
    backward_input(dx, NULL, &pooled, W, workspace, n, c, h, w, oc, kh, kw, sh, sw, ph, pw,
                   accumulate);
}

/* The partial gradient of group `group` of the weight gradient. */
static float *partial(const conv_job *J, int64_t group) {
    return J->workspace + LANES * lane_floats(&J->g) + group * J->g.k * J->g.oc;
}

/* Where a partial gradient holds dW[o, r], r = (ci, i, j): at [r, o] (dWT), or over
 * channels-last columns at [o, (i, j, ci)]. */
static int64_t partial_at(const conv_geometry *g, int64_t o, int64_t r) {
    if (!channels_last(g)) return r * g->oc + o;
    const int64_t taps = g->kh * g->kw;
    return o * g->k + r % taps * g->c + r / taps;
}

/* Unit: a group of samples, summed into its partial dWT[K, oc] from 0, sample by sample and
 * block by block. */
static void weight_group(const void *job, int lane, float *col, float *dyT, int64_t group) {
    const conv_job *J = job;
    const conv_geometry *g = &J->g;
    float *dWT = partial(J, group);
    zero_floats(dWT, g->k * g->oc);
    for (int64_t s = J->n * group / J->units; s < J->n * (group + 1) / J->units; s++) {
        const float *dy = sample_dy(J, lane, s);
        for (int64_t q0 = 0; q0 < g->p; q0 += J->width) {
            const int64_t width = min64(J->width, g->p - q0);
            segment seg[LONG_BLOCK];
            im2col_block(col, J->x + s * g->c * g->h * g->w, g, seg,
                         segments_of(seg, g, q0, width, width)); /* row-major [K, width] */
            transpose(dyT, dy + q0, g->oc, width, g->p);
            ht_gemm_nn(dWT, NULL, col, width, 1, dyT, g->k, g->oc, width, 1, HT_EPI_ADD, no_sgd);
        }
    }
}

/* ---- the weight gradient over channels-last columns ----
 * With at least a vector of channels, the columns transposed, colT[P, K'] with K' = (i, j, ci),
 * are copies of whole vectors: row q holds, for each tap (i, j), the c channels of the sample
 * channels-last, xT[h*w, c], at the input position the tap meets at output q (0 in the
 * padding); the kw taps of a row are one run. Then dW'[oc, K'] += dy[oc, P] colT[P, K'] reads
 * dy as it is (no transpose), in tiles as wide as the engine's (K' is the wide side, where oc
 * is in dWT[K, oc]); each element of dW is the same sum, in the same order, as over col. */

/* Whether the kw taps of output column ow all lie inside the input row (then they are one run
 * of kw * c floats of xT). */
HT_INLINE int taps_inside(const conv_geometry *g, int64_t ow) {
    return ow * g->sw - g->pw >= 0 && ow * g->sw - g->pw + g->kw <= g->w;
}

/* colT = the channels-last columns of positions [q0, q0 + width), row-major [width, K']. */
static void im2row_block(float *colT, const float *xT, const conv_geometry *g, int64_t q0,
                         int64_t width) {
    for (int64_t q = q0; q < q0 + width; q++) {
        const int64_t oh = q / g->ow, ow = q % g->ow, iw0 = ow * g->sw - g->pw;
        float *row = colT + (q - q0) * g->k;
        for (int64_t i = 0; i < g->kh; i++, row += g->kw * g->c) {
            const int64_t ih = oh * g->sh - g->ph + i;
            if (ih < 0 || ih >= g->h) {
                zero_floats(row, g->kw * g->c);
                continue;
            }
            const float *in = xT + ih * g->w * g->c; /* input column iw at in[iw * c] */
            if (taps_inside(g, ow))
                copy_floats(row, in + iw0 * g->c, g->kw * g->c);
            else
                for (int64_t j = 0, iw = iw0; j < g->kw; j++, iw++) {
                    if (iw < 0 || iw >= g->w)
                        zero_floats(row + j * g->c, g->c);
                    else
                        copy_floats(row + j * g->c, in + iw * g->c, g->c);
                }
        }
    }
}

/* Unit: a group of samples, summed into its partial dW'[oc, K'] from 0, sample by sample and
 * block by block. */
static void weight_group_channels_last(const void *job, int lane, float *colT, float *xT,
                                       int64_t group) {
    const conv_job *J = job;
    const conv_geometry *g = &J->g;
    float *dW = partial(J, group);
    zero_floats(dW, g->k * g->oc);
    for (int64_t s = J->n * group / J->units; s < J->n * (group + 1) / J->units; s++) {
        const float *dy = sample_dy(J, lane, s);
        transpose(xT, J->x + s * g->c * g->h * g->w, g->c, g->h * g->w, g->h * g->w);
        for (int64_t q0 = 0; q0 < g->p; q0 += J->width) {
            const int64_t width = min64(J->width, g->p - q0);
            im2row_block(colT, xT, g, q0, width);
            ht_gemm_nn(dW, NULL, dy + q0, g->p, 1, colT, g->oc, g->k, width, 1, HT_EPI_ADD,
                       no_sgd);
        }
    }
}

static void backward_weight(float *dW, const float *dy, const pooled_grad *pooled,
                            const float *x, float *workspace, int64_t n, int64_t c, int64_t h,
                            int64_t w, int64_t oc, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                            int64_t ph, int64_t pw) {
    conv_job J = {geometry(c, h, w, oc, kh, kw, sh, sw, ph, pw), dW, x, NULL, NULL, dy, workspace,
                  n, 0, 0, 0, 0, NULL, weight_group, 0, pooled};
    J.width = block_width(&J.g, 1);
    if (n <= 0) return;
    if (channels_last(&J.g)) J.unit = weight_group_channels_last;
    J.units = weight_groups(&J.g, n);
    run_units(&J, (double)n * J.g.p * J.g.k * oc);
    for (int64_t r = 0; r < J.g.k; r++)
        for (int64_t o = 0; o < oc; o++) {
            const int64_t at = partial_at(&J.g, o, r);
            float sum = partial(&J, 0)[at];
            for (int64_t group = 1; group < J.units; group++) sum += partial(&J, group)[at];
            dW[o * J.g.k + r] += sum;
        }
}

void ht_conv2d_bwd_weight(float *dW, const float *dy, const float *x, float *workspace, int64_t n,
                          int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh, int64_t kw,
                          int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
    backward_weight(dW, dy, NULL, x, workspace, n, c, h, w, oc, kh, kw, sh, sw, ph, pw);
}

void ht_conv2d_pool_bwd_weight(float *dW, const float *gy, const float *y, const int64_t *idx,
                               const float *x, float *workspace, int64_t n, int64_t c, int64_t h,
                               int64_t w, int64_t oc, int64_t kh, int64_t kw, int64_t sh,
                               int64_t sw, int64_t ph, int64_t pw, int64_t pkh, int64_t pkw,
                               int64_t psh, int64_t psw) {
    const pooled_grad pooled = {gy, y, idx, pkh, pkw, psh, psw};
    backward_weight(dW, NULL, &pooled, x, workspace, n, c, h, w, oc, kh, kw, sh, sw, ph, pw);
}

typedef struct {
    float *db;
    const float *dy;
    int64_t n, oc, p;
} bias_job;

/* Each channel's sum in HT_VL partial sums (planes in order, a vector of each at a time), then
 * the lanes in order; channels [from, to). */
static void bias_channels(void *arg, int64_t from, int64_t to) {
    const bias_job *B = arg;
    const int64_t p = B->p;
    for (int64_t o = from; o < to; o++) {
        ht_vf acc = ht_vzero();
        for (int64_t s = 0; s < B->n; s++) {
            const float *plane = B->dy + (s * B->oc + o) * p;
            int64_t q = 0;
            for (; q + HT_VL <= p; q += HT_VL) acc += ht_vload(plane + q);
            if (q < p) acc += ht_vload_first(plane + q, p - q);
        }
        float sum = 0.0f;
        for (int l = 0; l < HT_VL; l++) sum += acc[l];
        B->db[o] += sum;
    }
}

void ht_conv2d_bwd_bias(float *db, const float *dy, int64_t n, int64_t oc, int64_t oh, int64_t ow) {
    bias_job B = {db, dy, n, oc, oh * ow};
    ht_parallel_range(oc, HT_PARALLEL_MIN_ELEMENTS / max64(1, n * oh * ow) + 1, bias_channels, &B);
}
