/* ht_gemm_nn.c: C (epilogue) A B and column sums (ht_gemm_nn, ht_gemm_nn_block,
 * ht_gemm_colsum); see ht_gemm_impl.h. */
#include "ht_gemm_impl.h"

/* g[r][j] = the R x J-vector tile of sum_p A(r,p) B[p,:], B's row p at B + p*n, or at
 * B + b_rows[p] (b_rows is a constant NULL in the instances of the first kind); when TAIL, the
 * last vector holds only `last` < HT_VL columns (and zeros). */
HT_INLINE void nn_tile(ht_vf g[NN_ROWS][NN_VECS], const float *A, int64_t a_row, int64_t a_col,
                       const float *B, const int64_t *b_rows, int64_t n, int64_t k, int64_t last,
                       const int R, const int J, const int TAIL) {
    ht_vf acc[NN_ROWS][NN_VECS];
    HT_UNROLL(8)
    for (int r = 0; r < R; r++)
        HT_UNROLL(3)
        for (int j = 0; j < J; j++) acc[r][j] = ht_vzero();
    for (int64_t p = 0; p < k; p++) {
        const float *Bp = b_rows ? B + b_rows[p] : B + p * n, *Ap = A + p * a_col;
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
                           int64_t a_col, const float *B, const int64_t *b_rows, int64_t n,
                           int64_t k, int64_t last);
/* The instances: nn_tile_RxJ_TAIL (B's rows n apart) and nn_rows_tile_RxJ_TAIL (at b_rows). */
#define NN_TILE_FN(R, J, TAIL)                                                                  \
    static __attribute__((noinline)) void nn_tile_##R##x##J##_##TAIL(                          \
        ht_vf g[NN_ROWS][NN_VECS], const float *A, int64_t a_row, int64_t a_col,                 \
        const float *B, const int64_t *b_rows, int64_t n, int64_t k, int64_t last) {             \
        (void)b_rows;                                                                          \
        nn_tile(g, A, a_row, a_col, B, NULL, n, k, last, R, J, TAIL);                            \
    }                                                                                          \
    static __attribute__((noinline)) void nn_rows_tile_##R##x##J##_##TAIL(                     \
        ht_vf g[NN_ROWS][NN_VECS], const float *A, int64_t a_row, int64_t a_col,                 \
        const float *B, const int64_t *b_rows, int64_t n, int64_t k, int64_t last) {             \
        nn_tile(g, A, a_row, a_col, B, b_rows, n, k, last, R, J, TAIL);                          \
    }
#if NN_VECS == 3
#define NN_TILE_FNS(R)                                                                        \
    NN_TILE_FN(R, 1, 0) NN_TILE_FN(R, 2, 0) NN_TILE_FN(R, 3, 0)                              \
    NN_TILE_FN(R, 1, 1) NN_TILE_FN(R, 2, 1) NN_TILE_FN(R, 3, 1)
#define NN_TILES(KIND, R)                                                                     \
    {{KIND##_##R##x1_0, KIND##_##R##x1_1}, {KIND##_##R##x2_0, KIND##_##R##x2_1},             \
     {KIND##_##R##x3_0, KIND##_##R##x3_1}}
#else
#define NN_TILE_FNS(R)                                                                        \
    NN_TILE_FN(R, 1, 0) NN_TILE_FN(R, 2, 0) NN_TILE_FN(R, 1, 1) NN_TILE_FN(R, 2, 1)
#define NN_TILES(KIND, R)                                                                     \
    {{KIND##_##R##x1_0, KIND##_##R##x1_1}, {KIND##_##R##x2_0, KIND##_##R##x2_1}}
#endif
NN_TILE_FNS(1) NN_TILE_FNS(2) NN_TILE_FNS(3) NN_TILE_FNS(4) NN_TILE_FNS(5) NN_TILE_FNS(6)
#if NN_ROWS == 8
NN_TILE_FNS(7) NN_TILE_FNS(8)
#define NN_TILE_TABLE(KIND)                                                                   \
    {NN_TILES(KIND, 1), NN_TILES(KIND, 2), NN_TILES(KIND, 3), NN_TILES(KIND, 4),             \
     NN_TILES(KIND, 5), NN_TILES(KIND, 6), NN_TILES(KIND, 7), NN_TILES(KIND, 8)}
#else
#define NN_TILE_TABLE(KIND)                                                                   \
    {NN_TILES(KIND, 1), NN_TILES(KIND, 2), NN_TILES(KIND, 3),                                 \
     NN_TILES(KIND, 4), NN_TILES(KIND, 5), NN_TILES(KIND, 6)}
#endif
static const nn_tile_fn nn_tiles[NN_ROWS][NN_VECS][2] = NN_TILE_TABLE(nn_tile);
static const nn_tile_fn nn_rows_tiles[NN_ROWS][NN_VECS][2] = NN_TILE_TABLE(nn_rows_tile);
#undef NN_TILE_TABLE
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

/* Column panels outer: the k x NN_VECS panel of B stays in L1 while the row tiles pass. */
void ht_gemm_nn_block(const nn_product *P, int64_t i0, int64_t i1, int64_t v0, int64_t v1) {
    const int64_t n = P->n, vectors = (n + HT_VL - 1) / HT_VL, last = n - (vectors - 1) * HT_VL;
    split panels = split_at_most(v1 - v0, NN_VECS), rows = split_at_most(i1 - i0, NN_ROWS);
    for (int64_t c = 0, v = v0; c < panels.parts; v += part_size(panels, c++)) {
        int64_t J = part_size(panels, c);
        int tail = v + J == vectors && last < HT_VL;
        for (int64_t r = 0, i = i0; r < rows.parts; i += part_size(rows, r++)) {
            int64_t R = part_size(rows, r), at = i * n + v * HT_VL;
            ht_vf g[NN_ROWS][NN_VECS];
            const nn_tile_fn tile = P->b_rows ? nn_rows_tiles[R - 1][J - 1][tail]
                                              : nn_tiles[R - 1][J - 1][tail];
            tile(g, P->A + i * P->a_row, P->a_row, P->a_col, P->B + v * HT_VL, P->b_rows, n, P->k,
                 last);
            nn_epilogue(P->C + at, P->buf ? P->buf + at : NULL, n, g, R, J, tail ? last : HT_VL,
                        P->epilogue, P->sgd);
        }
    }
}

static void nn_task(void *arg, int t, int tasks) {
    const nn_product *P = arg;
    const int64_t vectors = (P->n + HT_VL - 1) / HT_VL;
    ht_share share = ht_task_share(P->split_vectors ? vectors : P->m, t, tasks);
    if (P->split_vectors)
        ht_gemm_nn_block(P, 0, P->m, share.from, share.to);
    else
        ht_gemm_nn_block(P, share.from, share.to, 0, vectors);
}

/* k == 1 (batch-1 weight gradients, a rank-1 update): one streaming pass over the rows of C,
 * instantiated per epilogue and SGD variant so that the loop body has no branches. Per element
 * the arithmetic is the tiles' (one multiply-add into zero), so both give the same bits.
 * A row of n >= HT_VL columns that is not whole vectors ends with its last HT_VL columns,
 * updated in a copy taken before the row's vectors are stored (the overlap thus gets the same
 * inputs, so the same bits) and stored whole after them: a masked store of the tail stalls the
 * next row's first load until it leaves the store buffer (a 10x50 update took 3.5 times as
 * long as a 10x48 one on Sapphire Rapids). */
HT_INLINE void rank1_row(float *c, float *bufp, ht_vf a, const float *b, int64_t n,
                         ht_sgd_params sgd, const ht_epilogue epilogue, const int sgd_variant) {
    int64_t j = 0;
    for (; j + HT_VL <= n; j += HT_VL)
        apply_epilogue(c + j, bufp ? bufp + j : NULL, ht_vfma(a, ht_vload(b + j), ht_vzero()),
                       HT_VL, epilogue, sgd, sgd_variant);
    if (j < n)
        apply_epilogue(c + j, bufp ? bufp + j : NULL,
                       ht_vfma(a, ht_vload_first(b + j, n - j), ht_vzero()), n - j, epilogue, sgd,
                       sgd_variant);
}

HT_INLINE void rank1_rows(float *C, float *buf, const float *a, int64_t a_stride, const float *b,
                          int64_t m, int64_t n, ht_sgd_params sgd, const ht_epilogue epilogue,
                          const int sgd_variant) {
    const int64_t whole = n / HT_VL * HT_VL, last = n - HT_VL;
    if (whole == n || n < HT_VL) {
        for (int64_t i = 0; i < m; i++)
            rank1_row(C + i * n, buf ? buf + i * n : NULL, ht_vsplat(a[i * a_stride]), b, n, sgd,
                      epilogue, sgd_variant);
        return;
    }
    for (int64_t i = 0; i < m; i++) {
        ht_vf ai = ht_vsplat(a[i * a_stride]);
        float *Ci = C + i * n, *bufi = buf ? buf + i * n : NULL;
        float tail[HT_VL] __attribute__((aligned(HT_VEC_BYTES)));
        float tail_buf[HT_VL] __attribute__((aligned(HT_VEC_BYTES)));
        ht_vstore(tail, ht_vload(Ci + last));
        ht_vstore(tail_buf, bufi ? ht_vload(bufi + last) : ht_vzero());
        rank1_row(tail, bufi ? tail_buf : NULL, ai, b + last, HT_VL, sgd, epilogue, sgd_variant);
        rank1_row(Ci, bufi, ai, b, whole, sgd, epilogue, sgd_variant);
        ht_vstore(Ci + last, ht_vload(tail));
        if (bufi) ht_vstore(bufi + last, ht_vload(tail_buf));
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
    nn_product P = {C, buf, A, B, a_row_stride, a_col_stride, m, n, k, epilogue, sgd, 0, NULL};
    int threads = threads_for(batch, m * n * k);
    const int64_t vectors = (n + HT_VL - 1) / HT_VL;
    if (threads == 1) {
        ht_gemm_nn_block(&P, 0, m, 0, vectors);
        return;
    }
    P.split_vectors = m < (int64_t)threads * NN_ROWS;
    threads = (int)min64(threads, P.split_vectors ? vectors : m);
    ht_parallel(threads, nn_task, &P);
}

void ht_gemm_nn_rows(float *C, const float *A, int64_t a_row_stride, int64_t a_col_stride,
                     const float *B, const int64_t *b_rows, int64_t m, int64_t n, int64_t k) {
    static const ht_sgd_params no_sgd = {0};
    nn_product P = {C, NULL, A, B, a_row_stride, a_col_stride, m, n, k, HT_EPI_STORE, no_sgd, 0,
                    b_rows};
    ht_gemm_nn_block(&P, 0, m, 0, (n + HT_VL - 1) / HT_VL);
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
