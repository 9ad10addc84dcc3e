/* ht_gemm.c: ht_gemm.h written once for every vector unit (ht_vec.h). Register-blocked
 * tiles sized from the vector width and register count, balanced over the shape (50 rows
 * in tiles of at most 8 are 7 tiles of 7 or 8, not 6 of 8 and one of 2), and products of a
 * batch split over threads by output tiles.
 *
 * Every output element is computed the same way whatever the tiling, so results do not
 * depend on the shape of the tile that computed them nor on the thread count, and the fused
 * kernels equal the unfused ones bit for bit:
 * - C = A B^T accumulates each output in one vector of partial sums, a fused multiply-add
 *   per HT_VL-float chunk of k in order (the last chunk zero-padded), then sums its lanes
 *   with ht_vsum_each's tree;
 * - C = A B accumulates each output from 0 with one fused multiply-add per term, p in order.
 * Neither operand needs packing: both are read along their contiguous dimension. */
#include "ht_gemm.h"

#include <stdatomic.h>

#include "ht_parallel.h"
#include "ht_vec.h"

/* Tile shapes. C = A B^T: NT_ROWS rows of A by NT_COLS rows of B, one accumulator each
 * (MV_COLS rows of B when A has one row: a matrix-vector product); C = A B: NN_ROWS rows by
 * NN_VECS vectors. Accumulators, operands and a temporary fit the vector registers. */
#if HT_VEC_REGS >= 32
#define NT_ROWS 4
#define NT_COLS 4
#define MV_COLS 16
#define NN_ROWS 8
#define NN_VECS 3
#else
#define NT_ROWS 2
#define NT_COLS 4
#define MV_COLS 8
#define NN_ROWS 6
#define NN_VECS 2
#endif
#define NT_MOST_ACC (MV_COLS > NT_ROWS * NT_COLS ? MV_COLS : NT_ROWS * NT_COLS)

/* The fused batch-1 sweep updates this many rows of W side by side: each row's product is a
 * chain of dependent multiply-adds, and one chain alone would wait on each. */
#define FUSED_ROWS 4

/* A product is split over threads when its batch has this many rows and each thread gets
 * at least this many multiply-adds (a few microseconds: handing out a task costs well under
 * one). */
#define PARALLEL_MIN_BATCH 16
#define PARALLEL_MIN_FMAS_PER_THREAD (1 << 17)

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* n split into `parts` near-equal parts, the first `extra` one larger than the others
 * (no division per part: these are computed per tile). */
typedef struct {
    int64_t parts, size, extra;
} split;

static split split_in(int64_t n, int64_t parts) {
    return parts > 0 ? (split){parts, n / parts, n % parts} : (split){0, 0, 0}; /* n == 0 */
}
/* The fewest parts of at most `most`. */
static split split_at_most(int64_t n, int64_t most) { return split_in(n, (n + most - 1) / most); }
static int64_t part_size(split s, int64_t p) { return s.size + (p < s.extra); }
static int64_t part_start(split s, int64_t p) { return p * s.size + min64(p, s.extra); }

/* The number of threads for a product with a batch of `batch` rows and `fmas` multiply-adds. */
static int threads_for(int64_t batch, int64_t fmas) {
    int threads = ht_get_num_threads();
    if (threads <= 1 || batch < PARALLEL_MIN_BATCH) return 1;
    int64_t worth = fmas / PARALLEL_MIN_FMAS_PER_THREAD;
    return (int)min64(threads, worth > 1 ? worth : 1);
}

/* Applies the product g to the first `count` floats at c (and bufp, used only by
 * HT_EPI_SGD with momentum); sgd_variant is ht_sgd_variant(sgd). */
HT_INLINE void apply_epilogue(float *c, float *bufp, ht_vf g, int64_t count, ht_epilogue epilogue,
                              ht_sgd_params sgd, const int sgd_variant) {
    const int whole = count >= HT_VL;
    switch (epilogue) {
    case HT_EPI_STORE:
        if (whole)
            ht_vstore(c, g);
        else
            ht_vstore_first(c, g, count);
        break;
    case HT_EPI_ADD:
        if (whole)
            ht_vstore(c, ht_vload(c) + g);
        else
            ht_vstore_first(c, ht_vload_first(c, count) + g, count);
        break;
    case HT_EPI_SGD: ht_sgd_rule_v(c, bufp, g, count, sgd, sgd_variant); break;
    }
}

/* ---- C = A B^T ---- */

/* acc[r*S + s] += chunk of A row r * chunk of B row s, for chunks of `count` floats (HT_VL,
 * or fewer zero-padded at the end of a row); rows of A and B are k apart. */
HT_INLINE void nt_step(ht_vf *acc, const float *A, const float *B, int64_t k, int64_t count,
                       const int R, const int S) {
#define NT_LOAD(p) (count == HT_VL ? ht_vload(p) : ht_vload_first(p, count))
    if (R == 1) { /* a matrix-vector product: each chunk of B is used once */
        ht_vf a = NT_LOAD(A);
        HT_UNROLL(16)
        for (int s = 0; s < S; s++) acc[s] = ht_vfma(a, NT_LOAD(B + s * k), acc[s]);
    } else {
        ht_vf b[NT_COLS];
        HT_UNROLL(4)
        for (int s = 0; s < S; s++) {
            b[s] = NT_LOAD(B + s * k);
            HT_VPIN(b[s]);
        }
        HT_UNROLL(4)
        for (int r = 0; r < R; r++) {
            ht_vf a = NT_LOAD(A + r * k);
            HT_VPIN(a);
            HT_UNROLL(4)
            for (int s = 0; s < S; s++) acc[r * S + s] = ht_vfma(a, b[s], acc[r * S + s]);
        }
    }
#undef NT_LOAD
}

/* C[R,S] (rows ldc apart) = A[R,k] B[S,k]^T (+ bias[S]). */
HT_INLINE void nt_tile(float *C, int64_t ldc, const float *A, const float *B, const float *bias,
                       int64_t k, const int R, const int S) {
    ht_vf acc[NT_MOST_ACC];
    HT_UNROLL(16)
    for (int q = 0; q < R * S; q++) acc[q] = ht_vzero();
    int64_t p = 0;
    for (; p + HT_VL <= k; p += HT_VL) nt_step(acc, A + p, B + p, k, HT_VL, R, S);
    if (p < k) nt_step(acc, A + p, B + p, k, k - p, R, S);
    float sums[NT_MOST_ACC];
    ht_vsum_lanes(sums, acc, R * S);
    for (int r = 0; r < R; r++)
        for (int s = 0; s < S; s++)
            C[r * ldc + s] = bias ? sums[r * S + s] + bias[s] : sums[r * S + s];
}

/* One out-of-line function per tile shape keeps gcc's per-function analyses small. */
typedef void (*nt_tile_fn)(float *C, int64_t ldc, const float *A, const float *B,
                           const float *bias, int64_t k);
#define NT_TILE_FN(R, S)                                                                       \
    static __attribute__((noinline)) void nt_tile_##R##x##S(                                   \
        float *C, int64_t ldc, const float *A, const float *B, const float *bias, int64_t k) { \
        nt_tile(C, ldc, A, B, bias, k, R, S);                                                  \
    }
#define NT_TILE_FNS(R) NT_TILE_FN(R, 1) NT_TILE_FN(R, 2) NT_TILE_FN(R, 3) NT_TILE_FN(R, 4)
#define NT_TILES(R) {nt_tile_##R##x1, nt_tile_##R##x2, nt_tile_##R##x3, nt_tile_##R##x4}
NT_TILE_FNS(1)
NT_TILE_FNS(2)
NT_TILE_FN(1, 5) NT_TILE_FN(1, 6) NT_TILE_FN(1, 7) NT_TILE_FN(1, 8)
#if NT_ROWS == 4
NT_TILE_FNS(3)
NT_TILE_FNS(4)
static const nt_tile_fn nt_tiles[NT_ROWS][NT_COLS] = {NT_TILES(1), NT_TILES(2), NT_TILES(3),
                                                      NT_TILES(4)};
#else
static const nt_tile_fn nt_tiles[NT_ROWS][NT_COLS] = {NT_TILES(1), NT_TILES(2)};
#endif
#if MV_COLS == 16
NT_TILE_FN(1, 9) NT_TILE_FN(1, 10) NT_TILE_FN(1, 11) NT_TILE_FN(1, 12)
NT_TILE_FN(1, 13) NT_TILE_FN(1, 14) NT_TILE_FN(1, 15) NT_TILE_FN(1, 16)
static const nt_tile_fn mv_tiles[MV_COLS] = {
    nt_tile_1x1, nt_tile_1x2, nt_tile_1x3, nt_tile_1x4, nt_tile_1x5, nt_tile_1x6,
    nt_tile_1x7, nt_tile_1x8, nt_tile_1x9, nt_tile_1x10, nt_tile_1x11, nt_tile_1x12,
    nt_tile_1x13, nt_tile_1x14, nt_tile_1x15, nt_tile_1x16};
#else
static const nt_tile_fn mv_tiles[MV_COLS] = {nt_tile_1x1, nt_tile_1x2, nt_tile_1x3, nt_tile_1x4,
                                             nt_tile_1x5, nt_tile_1x6, nt_tile_1x7, nt_tile_1x8};
#endif
#undef NT_TILES
#undef NT_TILE_FNS
#undef NT_TILE_FN

typedef struct {
    float *C;
    const float *A, *B, *bias;
    int64_t m, n, k;
    int split_columns; /* threads take columns of C (rows of B), else rows */
} nt_product;

/* Rows [i0, i1) by columns [j0, j1) of the product. */
static void nt_block(const nt_product *P, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    const int64_t n = P->n, k = P->k;
    if (i1 - i0 == 1) {
        split cols = split_at_most(j1 - j0, MV_COLS);
        for (int64_t c = 0, j = j0; c < cols.parts; j += part_size(cols, c++)) {
            const float *bias = P->bias ? P->bias + j : NULL;
            mv_tiles[part_size(cols, c) - 1](P->C + i0 * n + j, n, P->A + i0 * k, P->B + j * k,
                                             bias, k);
        }
        return;
    }
    split rows = split_at_most(i1 - i0, NT_ROWS), cols = split_at_most(j1 - j0, NT_COLS);
    for (int64_t r = 0, i = i0; r < rows.parts; i += part_size(rows, r++)) {
        const nt_tile_fn *tiles = nt_tiles[part_size(rows, r) - 1];
        for (int64_t c = 0, j = j0; c < cols.parts; j += part_size(cols, c++)) {
            const float *bias = P->bias ? P->bias + j : NULL;
            tiles[part_size(cols, c) - 1](P->C + i * n + j, n, P->A + i * k, P->B + j * k, bias, k);
        }
    }
}

static void nt_task(void *arg, int t, int tasks) {
    const nt_product *P = arg;
    split part = split_in(P->split_columns ? P->n : P->m, tasks);
    int64_t from = part_start(part, t), to = from + part_size(part, t);
    if (P->split_columns)
        nt_block(P, 0, P->m, from, to);
    else
        nt_block(P, from, to, 0, P->n);
}

void ht_gemm_nt(float *C, const float *A, const float *B, const float *bias,
                int64_t m, int64_t n, int64_t k) {
    nt_product P = {C, A, B, bias, m, n, k, 0};
    int threads = threads_for(m, m * n * k);
    /* Each thread reads only its share of B (a layer's weights) when B has rows enough. */
    P.split_columns = n >= (int64_t)threads * NT_COLS * 2;
    threads = (int)min64(threads, P.split_columns ? n : m);
    ht_parallel(threads, nt_task, &P);
}

/* ---- C (epilogue) A B ---- */

/* g[r][j] = the R x J-vector tile of sum_p A(r,p) B[p,:], B's rows n apart; when TAIL, the
 * last vector holds only `last` < HT_VL columns (and zeros). */
HT_INLINE void nn_tile(ht_vf g[NN_ROWS][NN_VECS], const float *A, int64_t a_row, int64_t a_col,
                       const float *B, int64_t n, int64_t k, int64_t last, const int R,
                       const int J, const int TAIL) {
    ht_vf acc[NN_ROWS][NN_VECS];
    HT_UNROLL(8)
    for (int r = 0; r < R; r++)
        HT_UNROLL(3)
        for (int j = 0; j < J; j++) acc[r][j] = ht_vzero();
    for (int64_t p = 0; p < k; p++) {
        const float *Bp = B + p * n, *Ap = A + p * a_col;
        ht_vf b[NN_VECS];
        HT_UNROLL(3)
        for (int j = 0; j < J; j++) {
            const float *Bpj = Bp + HT_VL * j;
            b[j] = TAIL && j == J - 1 ? ht_vload_first(Bpj, last) : ht_vload(Bpj);
            HT_VPIN(b[j]);
        }
        HT_UNROLL(8)
        for (int r = 0; r < R; r++) {
            ht_vf a = ht_vsplat(Ap[r * a_row]);
            HT_VPIN(a);
            HT_UNROLL(3)
            for (int j = 0; j < J; j++) acc[r][j] = ht_vfma(a, b[j], acc[r][j]);
        }
    }
    HT_UNROLL(8)
    for (int r = 0; r < R; r++)
        HT_UNROLL(3)
        for (int j = 0; j < J; j++) g[r][j] = acc[r][j];
}

typedef void (*nn_tile_fn)(ht_vf g[NN_ROWS][NN_VECS], const float *A, int64_t a_row,
                           int64_t a_col, const float *B, int64_t n, int64_t k, int64_t last);
#define NN_TILE_FN(R, J, TAIL)                                                                  \
    static __attribute__((noinline)) void nn_tile_##R##x##J##_##TAIL(                          \
        ht_vf g[NN_ROWS][NN_VECS], const float *A, int64_t a_row, int64_t a_col,                 \
        const float *B, int64_t n, int64_t k, int64_t last) {                                    \
        nn_tile(g, A, a_row, a_col, B, n, k, last, R, J, TAIL);                                  \
    }
#if NN_VECS == 3
#define NN_TILE_FNS(R)                                                                        \
    NN_TILE_FN(R, 1, 0) NN_TILE_FN(R, 2, 0) NN_TILE_FN(R, 3, 0)                              \
    NN_TILE_FN(R, 1, 1) NN_TILE_FN(R, 2, 1) NN_TILE_FN(R, 3, 1)
#define NN_TILES(R)                                                                           \
    {{nn_tile_##R##x1_0, nn_tile_##R##x1_1}, {nn_tile_##R##x2_0, nn_tile_##R##x2_1},         \
     {nn_tile_##R##x3_0, nn_tile_##R##x3_1}}
#else
#define NN_TILE_FNS(R)                                                                        \
    NN_TILE_FN(R, 1, 0) NN_TILE_FN(R, 2, 0) NN_TILE_FN(R, 1, 1) NN_TILE_FN(R, 2, 1)
#define NN_TILES(R) {{nn_tile_##R##x1_0, nn_tile_##R##x1_1}, {nn_tile_##R##x2_0, nn_tile_##R##x2_1}}
#endif
NN_TILE_FNS(1) NN_TILE_FNS(2) NN_TILE_FNS(3) NN_TILE_FNS(4) NN_TILE_FNS(5) NN_TILE_FNS(6)
#if NN_ROWS == 8
NN_TILE_FNS(7) NN_TILE_FNS(8)
static const nn_tile_fn nn_tiles[NN_ROWS][NN_VECS][2] = {
    NN_TILES(1), NN_TILES(2), NN_TILES(3), NN_TILES(4),
    NN_TILES(5), NN_TILES(6), NN_TILES(7), NN_TILES(8)};
#else
static const nn_tile_fn nn_tiles[NN_ROWS][NN_VECS][2] = {
    NN_TILES(1), NN_TILES(2), NN_TILES(3), NN_TILES(4), NN_TILES(5), NN_TILES(6)};
#endif
#undef NN_TILES
#undef NN_TILE_FNS
#undef NN_TILE_FN

/* Applies the tile g (R rows n apart, J vectors, the last holding `last_count` columns) at C;
 * `epilogue` and `sgd_variant` are constants in each instance. */
HT_INLINE void epilogue_rows(float *C, float *buf, int64_t n, ht_vf g[NN_ROWS][NN_VECS], int64_t R,
                             int64_t J, int64_t last_count, const ht_epilogue epilogue,
                             ht_sgd_params sgd, const int sgd_variant) {
    for (int64_t r = 0; r < R; r++) {
        float *c = C + r * n, *b = buf ? buf + r * n : NULL;
        for (int64_t j = 0; j < J - 1; j++)
            apply_epilogue(c + HT_VL * j, b ? b + HT_VL * j : NULL, g[r][j], HT_VL, epilogue, sgd,
                           sgd_variant);
        apply_epilogue(c + HT_VL * (J - 1), b ? b + HT_VL * (J - 1) : NULL, g[r][J - 1], last_count,
                       epilogue, sgd, sgd_variant);
    }
}

static void nn_epilogue(float *C, float *buf, int64_t n, ht_vf g[NN_ROWS][NN_VECS], int64_t R,
                        int64_t J, int64_t last_count, ht_epilogue epilogue, ht_sgd_params sgd) {
    switch (epilogue) {
    case HT_EPI_STORE: epilogue_rows(C, buf, n, g, R, J, last_count, HT_EPI_STORE, sgd, 0); break;
    case HT_EPI_ADD: epilogue_rows(C, buf, n, g, R, J, last_count, HT_EPI_ADD, sgd, 0); break;
    case HT_EPI_SGD:
        switch (ht_sgd_variant(sgd)) {
#define HT_EPILOGUE_SGD(V)                                                                    \
    epilogue_rows(C, buf, n, g, R, J, last_count, HT_EPI_SGD, sgd, (V));                      \
    break
            HT_SGD_VARIANTS(HT_EPILOGUE_SGD)
#undef HT_EPILOGUE_SGD
        }
        break;
    }
}

typedef struct {
    float *C, *buf;
    const float *A, *B;
    int64_t a_row, a_col, m, n, k;
    ht_epilogue epilogue;
    ht_sgd_params sgd;
    int split_vectors; /* threads take columns of C (in whole vectors), else rows */
} nn_product;

/* Rows [i0, i1) by the columns of vectors [v0, v1) of the product. Column panels outer: the
 * k x NN_VECS panel of B stays in L1 while the row tiles pass. */
static void nn_block(const nn_product *P, int64_t i0, int64_t i1, int64_t v0, int64_t v1) {
    const int64_t n = P->n, vectors = (n + HT_VL - 1) / HT_VL, last = n - (vectors - 1) * HT_VL;
    split panels = split_at_most(v1 - v0, NN_VECS), rows = split_at_most(i1 - i0, NN_ROWS);
    for (int64_t c = 0, v = v0; c < panels.parts; v += part_size(panels, c++)) {
        int64_t J = part_size(panels, c);
        int tail = v + J == vectors && last < HT_VL;
        for (int64_t r = 0, i = i0; r < rows.parts; i += part_size(rows, r++)) {
            int64_t R = part_size(rows, r), at = i * n + v * HT_VL;
            ht_vf g[NN_ROWS][NN_VECS];
            nn_tiles[R - 1][J - 1][tail](g, P->A + i * P->a_row, P->a_row, P->a_col,
                                         P->B + v * HT_VL, n, P->k, last);
            nn_epilogue(P->C + at, P->buf ? P->buf + at : NULL, n, g, R, J, tail ? last : HT_VL,
                        P->epilogue, P->sgd);
        }
    }
}

static void nn_task(void *arg, int t, int tasks) {
    const nn_product *P = arg;
    const int64_t vectors = (P->n + HT_VL - 1) / HT_VL;
    split part = split_in(P->split_vectors ? vectors : P->m, tasks);
    int64_t from = part_start(part, t), to = from + part_size(part, t);
    if (P->split_vectors)
        nn_block(P, 0, P->m, from, to);
    else
        nn_block(P, from, to, 0, vectors);
}

/* k == 1 (batch-1 weight gradients, a rank-1 update): one streaming pass over the rows of C,
 * instantiated per epilogue and SGD variant so that the loop body has no branches. Per element
 * the arithmetic is the tiles' (one multiply-add into zero), so both give the same bits. */
HT_INLINE void rank1_rows(float *C, float *buf, const float *a, int64_t a_stride, const float *b,
                          int64_t m, int64_t n, ht_sgd_params sgd, const ht_epilogue epilogue,
                          const int sgd_variant) {
    for (int64_t i = 0; i < m; i++) {
        ht_vf ai = ht_vsplat(a[i * a_stride]);
        float *Ci = C + i * n, *bufi = buf ? buf + i * n : NULL;
        int64_t j = 0;
        for (; j + HT_VL <= n; j += HT_VL)
            apply_epilogue(Ci + j, bufi ? bufi + j : NULL, ht_vfma(ai, ht_vload(b + j), ht_vzero()),
                           HT_VL, epilogue, sgd, sgd_variant);
        if (j < n)
            apply_epilogue(Ci + j, bufi ? bufi + j : NULL,
                           ht_vfma(ai, ht_vload_first(b + j, n - j), ht_vzero()), n - j, epilogue,
                           sgd, sgd_variant);
    }
}

static void nn_rank1(float *C, float *buf, const float *a, int64_t a_stride, const float *b,
                     int64_t m, int64_t n, ht_epilogue epilogue, ht_sgd_params sgd) {
    switch (epilogue) {
    case HT_EPI_STORE: rank1_rows(C, buf, a, a_stride, b, m, n, sgd, HT_EPI_STORE, 0); break;
    case HT_EPI_ADD: rank1_rows(C, buf, a, a_stride, b, m, n, sgd, HT_EPI_ADD, 0); break;
    case HT_EPI_SGD:
        switch (ht_sgd_variant(sgd)) {
#define HT_RANK1_SGD(V) rank1_rows(C, buf, a, a_stride, b, m, n, sgd, HT_EPI_SGD, (V)); break
            HT_SGD_VARIANTS(HT_RANK1_SGD)
#undef HT_RANK1_SGD
        }
        break;
    }
}

void ht_gemm_nn(float *C, float *buf, const float *A, int64_t a_row_stride, int64_t a_col_stride,
                const float *B, int64_t m, int64_t n, int64_t k, int64_t batch,
                ht_epilogue epilogue, ht_sgd_params sgd) {
    if (k == 1) {
        nn_rank1(C, buf, A, a_row_stride, B, m, n, epilogue, sgd);
        return;
    }
    nn_product P = {C, buf, A, B, a_row_stride, a_col_stride, m, n, k, epilogue, sgd, 0};
    int threads = threads_for(batch, m * n * k);
    const int64_t vectors = (n + HT_VL - 1) / HT_VL;
    P.split_vectors = m < (int64_t)threads * NN_ROWS;
    threads = (int)min64(threads, P.split_vectors ? vectors : m);
    ht_parallel(threads, nn_task, &P);
}

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
    split part = split_in(S->update.m, tasks);
    split groups = split_at_most(part_size(part, t), UPDATE_GROUP_ROWS);
    for (int64_t g = 0, i = part_start(part, t); g < groups.parts; i += part_size(groups, g++)) {
        nn_block(&S->update, i, i + part_size(groups, g), 0, vectors);
        nt_block(&S->forward, 0, S->forward.m, i, i + part_size(groups, g));
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

/* Q rows of W side by side (W points at the first): each element updated as rank1_rows does,
 * each row's product accumulated as nt_tile's (same chunks, multiply-adds and order; the
 * lanes past the end of a row zeroed, as the zero-padded chunks there are), into acc[Q]. */
HT_INLINE void sweep_rows(float *W, float *buf, const float *dy, const float *x, int64_t n,
                          ht_sgd_params sgd, const int sgd_variant, const float *x_next,
                          ht_vf *acc, const int Q) {
    ht_vf d[FUSED_ROWS], a[FUSED_ROWS];
    HT_UNROLL(4)
    for (int q = 0; q < Q; q++) {
        d[q] = ht_vsplat(dy[q]);
        a[q] = ht_vzero();
    }
    int64_t j = 0;
    for (; j + HT_VL <= n; j += HT_VL) {
        ht_vf xv = ht_vload(x + j), xn = ht_vload(x_next + j);
        HT_UNROLL(4)
        for (int q = 0; q < Q; q++) {
            ht_vf w = ht_sgd_rule_v(W + q * n + j, buf ? buf + q * n + j : NULL,
                                    ht_vfma(d[q], xv, ht_vzero()), HT_VL, sgd, sgd_variant);
            a[q] = ht_vfma(xn, w, a[q]);
        }
    }
    if (j < n) {
        int64_t count = n - j;
        ht_vf xv = ht_vload_first(x + j, count), xn = ht_vload_first(x_next + j, count);
        HT_UNROLL(4)
        for (int q = 0; q < Q; q++) {
            ht_vf w = ht_sgd_rule_v(W + q * n + j, buf ? buf + q * n + j : NULL,
                                    ht_vfma(d[q], xv, ht_vzero()), count, sgd, sgd_variant);
            /* Lanes past the row hold the rule applied to zeros, NaN when dy is infinite. */
            a[q] = ht_vfma(xn, ht_vkeep_first(w, count), a[q]);
        }
    }
    HT_UNROLL(4)
    for (int q = 0; q < Q; q++) acc[q] = a[q];
}

/* One group of HT_VL rows (its products summed by one tree), `rows` of them from row i0:
 * blocks of FUSED_ROWS, then single rows; last to first when `backwards`. */
HT_INLINE void sweep_group(float *W, float *buf, const float *dy, const float *x, int64_t i0,
                           int rows, int64_t n, ht_sgd_params sgd, const int sgd_variant, float *y,
                           const float *x_next, int backwards) {
    ht_vf acc[HT_VL];
    for (int q = 0; q < HT_VL; q++) acc[q] = ht_vzero();
    const int blocks = rows / FUSED_ROWS, singles = rows % FUSED_ROWS;
    for (int u = 0; u < blocks + singles; u++) {
        int unit = backwards ? blocks + singles - 1 - u : u;
        int r = unit < blocks ? unit * FUSED_ROWS : blocks * FUSED_ROWS + (unit - blocks);
        float *Wr = W + (i0 + r) * n, *bufr = buf ? buf + (i0 + r) * n : NULL;
        if (unit < blocks)
            sweep_rows(Wr, bufr, dy + i0 + r, x, n, sgd, sgd_variant, x_next, acc + r, FUSED_ROWS);
        else
            sweep_rows(Wr, bufr, dy + i0 + r, x, n, sgd, sgd_variant, x_next, acc + r, 1);
    }
    ht_vf sums = ht_vsum_each(acc);
    for (int q = 0; q < rows; q++) y[i0 + q] = sums[q];
}

HT_INLINE void rank1_sgd_then_dot(float *W, float *buf, const float *dy, const float *x,
                                  int64_t m, int64_t n, ht_sgd_params sgd, const int sgd_variant,
                                  float *y, const float *x_next, int backwards) {
    const int64_t groups = (m + HT_VL - 1) / HT_VL;
    for (int64_t g = 0; g < groups; g++) {
        int64_t i0 = (backwards ? groups - 1 - g : g) * HT_VL;
        sweep_group(W, buf, dy, x, i0, (int)min64(HT_VL, m - i0), n, sgd, sgd_variant, y, x_next,
                    backwards);
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

/* ---- column sums ---- */

void ht_gemm_colsum(float *C, float *buf, const float *X, int64_t rows, int64_t cols,
                    ht_epilogue epilogue, ht_sgd_params sgd) {
    const int sgd_variant = ht_sgd_variant(sgd);
    for (int64_t j = 0; j < cols; j += HT_VL) {
        int64_t count = min64(HT_VL, cols - j);
        ht_vf acc = ht_vzero();
        for (int64_t i = 0; i < rows; i++) {
            const float *Xij = X + i * cols + j;
            acc += count == HT_VL ? ht_vload(Xij) : ht_vload_first(Xij, count);
        }
        apply_epilogue(C + j, buf ? buf + j : NULL, acc, count, epilogue, sgd, sgd_variant);
    }
}
