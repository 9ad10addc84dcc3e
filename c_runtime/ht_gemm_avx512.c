/* ht_gemm_avx512.c: ht_gemm.h with AVX-512 register-blocked micro-tiles and masked tails. */
#include "ht_gemm.h"

#ifdef __AVX512F__

#define HT_INLINE static inline __attribute__((always_inline))

/* Applies g to the lanes of `mask` at c (and bufp, used only by HT_EPI_SGD with momentum);
 * sgd_variant is ht_sgd_variant(sgd). */
HT_INLINE void apply_epilogue(float *c, float *bufp, __m512 g, __mmask16 mask,
                              ht_epilogue epilogue, ht_sgd_params sgd, int sgd_variant) {
    switch (epilogue) {
    case HT_EPI_STORE: ht_store16(c, g, mask); break;
    case HT_EPI_ADD: ht_store16(c, _mm512_add_ps(ht_load16(c, mask), g), mask); break;
    case HT_EPI_SGD: ht_sgd_rule_x16(c, bufp, g, mask, sgd, sgd_variant); break;
    }
}

/* ---- C = A B^T: both operands are contiguous along k, so each output is a dot product
 * accumulated in a vector of 16 partial sums and reduced at the end of the tile. ---- */

/* Lane p of the result is the total of the 16 lanes of acc[p]. A transposing tree: each level
 * halves both the number of vectors and the partial sums per quantity. The tree leaves the
 * total of input v[i] in lane 4q+e where i = {0,2,1,3}[e] + {0,8,4,12}[q], hence the order. */
HT_INLINE __m512 sum_each_of_16(const __m512 acc[16]) {
    const __m512 v[16] = {acc[0], acc[2], acc[1], acc[3], acc[8], acc[10], acc[9], acc[11],
                          acc[4], acc[6], acc[5], acc[7], acc[12], acc[14], acc[13], acc[15]};
    __m512 w[8], x[4], y[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) /* w[i] = [v[i]: 8 partials | v[i+8]: 8 partials] */
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[i], v[i + 8], 0x44),
                             _mm512_shuffle_f32x4(v[i], v[i + 8], 0xEE));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) /* 128-bit lanes: v[i], v[i+8], v[i+4], v[i+12], 4 partials each */
        x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(w[i], w[i + 4], 0x88),
                             _mm512_shuffle_f32x4(w[i], w[i + 4], 0xDD));
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) /* per 128-bit lane: 2 partials of x[i], then 2 of x[i+2] */
        y[i] = _mm512_add_ps(_mm512_shuffle_ps(x[i], x[i + 2], 0x88),
                             _mm512_shuffle_ps(x[i], x[i + 2], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_ps(y[0], y[1], 0x88), _mm512_shuffle_ps(y[0], y[1], 0xDD));
}

/* acc[r*LS + s] += A[r, 16 floats] * B[s, 16 floats]; rows of A and B are k apart. */
HT_INLINE void nt_step(__m512 acc[16], const float *A, const float *B, int64_t k, __mmask16 mask,
                       const int R, const int S, const int LS) {
    if (R == 1) { /* a matrix-vector product: stream B (16 rows at a time), reuse a */
        __m512 a = ht_load16(A, mask);
#pragma GCC unroll 16
        for (int s = 0; s < S; s++) acc[s] = _mm512_fmadd_ps(a, ht_load16(B + s * k, mask), acc[s]);
    } else {
        __m512 b[4];
#pragma GCC unroll 4
        for (int s = 0; s < S; s++) {
            b[s] = ht_load16(B + s * k, mask);
            /* Pin b[s] (and a below) to a register: otherwise gcc folds the load into each
             * FMA that uses it, and the repeated loads make the tile load-bound. */
            __asm__("" : "+v"(b[s]));
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 a = ht_load16(A + r * k, mask);
            __asm__("" : "+v"(a));
#pragma GCC unroll 4
            for (int s = 0; s < S; s++) acc[r * LS + s] = _mm512_fmadd_ps(a, b[s], acc[r * LS + s]);
        }
    }
}

/* C[R,S] (rows ldc apart) = A[R,k] B[S,k]^T (+ bias[S]); R*LS <= 16 accumulators. */
HT_INLINE void nt_tile(float *C, int64_t ldc, const float *A, const float *B, const float *bias,
                       int64_t k, const int R, const int S, const int LS) {
    __m512 acc[16];
#pragma GCC unroll 16
    for (int p = 0; p < 16; p++) acc[p] = _mm512_setzero_ps();
    int64_t kk = 0;
    for (; kk + 16 <= k; kk += 16) nt_step(acc, A + kk, B + kk, k, HT_ALL_LANES, R, S, LS);
    if (kk < k) nt_step(acc, A + kk, B + kk, k, ht_lane_mask(k - kk), R, S, LS);
    float sums[16];
    _mm512_storeu_ps(sums, sum_each_of_16(acc));
    for (int r = 0; r < R; r++)
        for (int s = 0; s < S; s++) C[r * ldc + s] = bias ? sums[r * LS + s] + bias[s] : sums[r * LS + s];
}

/* One out-of-line function per tile shape keeps gcc's per-function analyses small. */
#define HT_NT_TILE_FN(R, S, LS)                                                                  \
    static __attribute__((noinline)) void nt_tile_##R##x##S(float *C, int64_t ldc, const float *A, \
                                                           const float *B, const float *bias,    \
                                                           int64_t k) {                           \
        nt_tile(C, ldc, A, B, bias, k, R, S, LS);                                                  \
    }
HT_NT_TILE_FN(4, 4, 4)
HT_NT_TILE_FN(4, 2, 4)
HT_NT_TILE_FN(4, 1, 4)
HT_NT_TILE_FN(1, 16, 16)
HT_NT_TILE_FN(1, 8, 16)
HT_NT_TILE_FN(1, 4, 16)
HT_NT_TILE_FN(1, 2, 16)
HT_NT_TILE_FN(1, 1, 16)
#undef HT_NT_TILE_FN

void ht_gemm_nt(float *C, const float *A, const float *B, const float *bias,
                int64_t m, int64_t n, int64_t k) {
#define HT_NT_TILE(R, S) nt_tile_##R##x##S(C + i * n + j, n, A + i * k, B + j * k, bias ? bias + j : NULL, k)
    int64_t i = 0;
    for (; i + 4 <= m; i += 4) { /* 4x4 tiles: 8 loads per 16 FMAs */
        int64_t j = 0;
        for (; j + 4 <= n; j += 4) HT_NT_TILE(4, 4);
        if (n - j >= 2) {
            HT_NT_TILE(4, 2);
            j += 2;
        }
        if (n - j >= 1) HT_NT_TILE(4, 1);
    }
    for (; i < m; i++) { /* leftover rows (all of them when m == 1): one pass over B */
        int64_t j = 0;
        for (; j + 16 <= n; j += 16) HT_NT_TILE(1, 16);
        if (n - j >= 8) {
            HT_NT_TILE(1, 8);
            j += 8;
        }
        if (n - j >= 4) {
            HT_NT_TILE(1, 4);
            j += 4;
        }
        if (n - j >= 2) {
            HT_NT_TILE(1, 2);
            j += 2;
        }
        if (n - j >= 1) HT_NT_TILE(1, 1);
    }
#undef HT_NT_TILE
}

/* ---- g = A B: broadcast one element of A against vectors of a row of B. ---- */

enum { NN_ROWS = 8, NN_VECS = 3 }; /* 24 accumulators + 3 rows of B + 1 broadcast <= 32 zmm */

/* The R x (16J) tile at C (rows ldc apart; the last vector masked by `last`) of
 * sum_p A(r,p) B[p,:], with B's rows ldc apart as well. */
HT_INLINE void nn_tile(float *C, float *buf, int64_t ldc, const float *A, int64_t a_row,
                       int64_t a_col, const float *B, int64_t k, __mmask16 last,
                       ht_epilogue epilogue, ht_sgd_params sgd, const int R, const int J) {
    __m512 acc[NN_ROWS][NN_VECS];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int j = 0; j < J; j++) acc[r][j] = _mm512_setzero_ps();
    for (int64_t p = 0; p < k; p++) {
        const float *Bp = B + p * ldc;
        const float *Ap = A + p * a_col;
        __m512 b[NN_VECS];
#pragma GCC unroll 3
        for (int j = 0; j < J; j++) b[j] = ht_load16(Bp + 16 * j, j == J - 1 ? last : HT_ALL_LANES);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m512 a = _mm512_set1_ps(Ap[r * a_row]);
#pragma GCC unroll 3
            for (int j = 0; j < J; j++) acc[r][j] = _mm512_fmadd_ps(a, b[j], acc[r][j]);
        }
    }
    const int sgd_variant = epilogue == HT_EPI_SGD ? ht_sgd_variant(sgd) : 0;
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int j = 0; j < J; j++) {
            int64_t at = r * ldc + 16 * j;
            apply_epilogue(C + at, buf ? buf + at : NULL, acc[r][j], j == J - 1 ? last : HT_ALL_LANES,
                           epilogue, sgd, sgd_variant);
        }
}

#define HT_NN_TILE_FN(R, J)                                                                      \
    static __attribute__((noinline)) void nn_tile_##R##x##J(                                     \
        float *C, float *buf, int64_t ldc, const float *A, int64_t a_row, int64_t a_col,           \
        const float *B, int64_t k, __mmask16 last, ht_epilogue epilogue, ht_sgd_params sgd) {      \
        nn_tile(C, buf, ldc, A, a_row, a_col, B, k, last, epilogue, sgd, R, J);                    \
    }
#define HT_NN_TILE_FNS(R) HT_NN_TILE_FN(R, 1) HT_NN_TILE_FN(R, 2) HT_NN_TILE_FN(R, 3)
HT_NN_TILE_FNS(1) HT_NN_TILE_FNS(2) HT_NN_TILE_FNS(4) HT_NN_TILE_FNS(8)
#undef HT_NN_TILE_FNS
#undef HT_NN_TILE_FN

typedef void (*nn_tile_fn)(float *, float *, int64_t, const float *, int64_t, int64_t,
                           const float *, int64_t, __mmask16, ht_epilogue, ht_sgd_params);

/* Tile shapes by row count {8, 4, 2, 1} and vector count {1, 2, 3}. */
static const nn_tile_fn nn_tiles[4][NN_VECS] = {
    {nn_tile_8x1, nn_tile_8x2, nn_tile_8x3},
    {nn_tile_4x1, nn_tile_4x2, nn_tile_4x3},
    {nn_tile_2x1, nn_tile_2x2, nn_tile_2x3},
    {nn_tile_1x1, nn_tile_1x2, nn_tile_1x3}};

/* k == 1 (batch-1 weight gradients, a rank-1 update): one streaming pass over the rows of C,
 * instantiated per epilogue and SGD variant so that the loop body has no branches. Per element
 * the arithmetic is the tiles' (one FMA into zero), so both paths give the same bits. */
HT_INLINE void rank1_rows(float *C, float *buf, const float *a, int64_t a_stride, const float *b,
                          int64_t m, int64_t n, ht_sgd_params sgd, const ht_epilogue epilogue,
                          const int sgd_variant) {
    const __m512 zero = _mm512_setzero_ps();
    const __mmask16 tail = ht_lane_mask(n % 16);
    for (int64_t i = 0; i < m; i++) {
        __m512 ai = _mm512_set1_ps(a[i * a_stride]);
        float *Ci = C + i * n, *bufi = buf ? buf + i * n : NULL;
        int64_t j = 0;
        for (; j + 16 <= n; j += 16) {
            __m512 g = _mm512_fmadd_ps(ai, _mm512_loadu_ps(b + j), zero);
            apply_epilogue(Ci + j, bufi ? bufi + j : NULL, g, HT_ALL_LANES, epilogue, sgd, sgd_variant);
        }
        if (j < n) {
            __m512 g = _mm512_fmadd_ps(ai, _mm512_maskz_loadu_ps(tail, b + j), zero);
            apply_epilogue(Ci + j, bufi ? bufi + j : NULL, g, tail, epilogue, sgd, sgd_variant);
        }
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
                const float *B, int64_t m, int64_t n, int64_t k, ht_epilogue epilogue,
                ht_sgd_params sgd) {
    if (k == 1) {
        nn_rank1(C, buf, A, a_row_stride, B, m, n, epilogue, sgd);
        return;
    }
    /* Column panels outer: the k x 48 panel of B stays in L1 while the row tiles pass. */
    for (int64_t j0 = 0; j0 < n; j0 += 16 * NN_VECS) {
        int64_t cols = n - j0 < 16 * NN_VECS ? n - j0 : 16 * NN_VECS;
        int vecs = (int)((cols + 15) / 16);
        __mmask16 last = ht_lane_mask(cols - 16 * (vecs - 1));
        int64_t i = 0;
        for (int shape = 0; shape < 4; shape++) { /* 8-row tiles, then at most one each of 4, 2, 1 */
            int64_t rows = NN_ROWS >> shape;
            for (; m - i >= rows; i += rows)
                nn_tiles[shape][vecs - 1](C + i * n + j0, buf ? buf + i * n + j0 : NULL, n,
                                          A + i * a_row_stride, a_row_stride, a_col_stride,
                                          B + j0, k, last, epilogue, sgd);
        }
    }
}

/* W[m,n] <- SGD step with the rank-1 gradient dy[m] (x) x[n], then y[m] = W x_next[n] with
 * the new W, in one pass over W. The update is rank1_rows' per element and the product
 * nt_tile's per row (same 16-float chunks, FMAs and reduction tree), so the result equals
 * the two passes bit for bit. */
HT_INLINE void rank1_sgd_then_dot(float *W, float *buf, const float *dy, const float *x,
                                  int64_t m, int64_t n, ht_sgd_params sgd, const int sgd_variant,
                                  float *y, const float *x_next) {
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t i0 = 0; i0 < m; i0 += 16) {
        int rows = m - i0 < 16 ? (int)(m - i0) : 16;
        __m512 acc[16];
        for (int r = 0; r < 16; r++) acc[r] = zero;
        /* Row by row, streaming through W; each row's chunks are summed in the same order as
         * nt_tile's (chunk-major there), so the sums are the same. */
        for (int r = 0; r < rows; r++) {
            const __m512 dyr = _mm512_set1_ps(dy[i0 + r]);
            float *wr = W + (i0 + r) * n, *bufr = buf ? buf + (i0 + r) * n : NULL;
            __m512 a = zero;
            for (int64_t kk = 0; kk < n; kk += 16) {
                __mmask16 mask = n - kk >= 16 ? HT_ALL_LANES : ht_lane_mask(n - kk);
                __m512 g = _mm512_fmadd_ps(dyr, ht_load16(x + kk, mask), zero);
                __m512 w = ht_sgd_rule_x16(wr + kk, bufr ? bufr + kk : NULL, g, mask, sgd, sgd_variant);
                /* Lanes past the row hold the rule applied to zeros, NaN when dy is infinite:
                 * zero them, as nt_tile's masked loads do, so that they add nothing. */
                w = _mm512_maskz_mov_ps(mask, w);
                a = _mm512_fmadd_ps(ht_load16(x_next + kk, mask), w, a);
            }
            acc[r] = a;
        }
        float sums[16];
        _mm512_storeu_ps(sums, sum_each_of_16(acc));
        for (int r = 0; r < rows; r++) y[i0 + r] = sums[r];
    }
}

void ht_gemm_rank1_sgd_then_nt(float *W, float *buf, const float *dy, const float *x, int64_t m,
                               int64_t n, ht_sgd_params sgd, float *y, const float *x_next) {
    switch (ht_sgd_variant(sgd)) {
#define HT_RANK1_DOT(V) rank1_sgd_then_dot(W, buf, dy, x, m, n, sgd, (V), y, x_next); break
        HT_SGD_VARIANTS(HT_RANK1_DOT)
#undef HT_RANK1_DOT
    }
}

void ht_gemm_colsum(float *C, float *buf, const float *X, int64_t rows, int64_t cols,
                    ht_epilogue epilogue, ht_sgd_params sgd) {
    for (int64_t j = 0; j < cols; j += 16) {
        __mmask16 mask = ht_lane_mask(cols - j);
        __m512 acc = _mm512_setzero_ps();
        for (int64_t i = 0; i < rows; i++) acc = _mm512_add_ps(acc, ht_load16(X + i * cols + j, mask));
        apply_epilogue(C + j, buf ? buf + j : NULL, acc, mask, epilogue, sgd, ht_sgd_variant(sgd));
    }
}

#endif
