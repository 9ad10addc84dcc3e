/* ht_gemm_nt.c: C = A B^T (ht_gemm_nt, ht_gemm_nt_block); see ht_gemm_impl.h. */
#include "ht_gemm_impl.h"

#include <stdatomic.h>

/* The floats of B a group of column tiles reads at most (in a core's L2 with a tile of A). */
#define NT_CACHED_FLOATS (1 << 17)

#define NT_MOST_ACC (MV_COLS > NT_ROWS * NT_COLS ? MV_COLS : NT_ROWS * NT_COLS)

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

/* ---- matrix-vector products ----
 * Each sweeps its rows of B (a layer's weights, read once: from memory or a far cache when
 * they do not fit a core's) in the order opposite to the previous sweep over the same rows,
 * so that what that one left in cache, its end, is read first. The order of the tiles changes
 * no output. The previous sweeps are remembered per B address (a small table, shared by
 * threads: a lost or mistaken entry only costs the order). */

/* Rows of B below this many floats stay in any core's cache whatever the order. */
#define SWEEP_MIN_FLOATS (1 << 16)
#define SWEEP_SLOT_BITS 6

/* The B of the last reversed sweep, by a hash of its address. */
static _Atomic(uintptr_t) reversed_sweeps[1 << SWEEP_SLOT_BITS];

/* Whether to sweep the `floats` floats at B backwards, remembered for the next sweep. */
static int reverse_sweep(const float *B, int64_t floats) {
    if (floats < SWEEP_MIN_FLOATS) return 0;
    const uintptr_t key = (uintptr_t)B;
    _Atomic(uintptr_t) *slot = &reversed_sweeps[address_slot(B, SWEEP_SLOT_BITS)];
    const int reverse = atomic_load_explicit(slot, memory_order_relaxed) != key;
    atomic_store_explicit(slot, reverse ? key : 0, memory_order_relaxed);
    return reverse;
}

/* Row i of the product, columns [j0, j1): tiles of up to MV_COLS rows of B. */
static void mv_block(const nt_product *P, int64_t i, int64_t j0, int64_t j1) {
    const int64_t n = P->n, k = P->k;
    const split cols = split_at_most(j1 - j0, MV_COLS);
    const int reverse = cols.parts > 1 && reverse_sweep(P->B + j0 * k, (j1 - j0) * k);
    for (int64_t t = 0; t < cols.parts; t++) {
        const int64_t c = reverse ? cols.parts - 1 - t : t, j = j0 + part_start(cols, c);
        mv_tiles[part_size(cols, c) - 1](P->C + i * n + j, n, P->A + i * k, P->B + j * k,
                                         P->bias ? P->bias + j : NULL, k);
    }
}

void ht_gemm_nt_block(const nt_product *P, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    const int64_t n = P->n, k = P->k;
    if (i1 - i0 == 1) {
        mv_block(P, i0, j0, j1);
        return;
    }
    /* Groups of column tiles outer, row tiles inner: the group's rows of B stay in cache while
     * all of A passes (rows of A outer would pass all of B for each row tile). */
    split rows = split_at_most(i1 - i0, NT_ROWS), cols = split_at_most(j1 - j0, NT_COLS);
    const int64_t group = min64(cols.parts, 1 + NT_CACHED_FLOATS / (NT_COLS * (k > 0 ? k : 1)));
    for (int64_t c0 = 0, j0g = j0; c0 < cols.parts; c0 += group) {
        const int64_t c1 = min64(cols.parts, c0 + group);
        for (int64_t r = 0, i = i0; r < rows.parts; i += part_size(rows, r++)) {
            const nt_tile_fn *tiles = nt_tiles[part_size(rows, r) - 1];
            for (int64_t c = c0, j = j0g; c < c1; j += part_size(cols, c++)) {
                const float *bias = P->bias ? P->bias + j : NULL;
                tiles[part_size(cols, c) - 1](P->C + i * n + j, n, P->A + i * k, P->B + j * k, bias,
                                              k);
            }
        }
        for (int64_t c = c0; c < c1; c++) j0g += part_size(cols, c);
    }
}

static void nt_task(void *arg, int t, int tasks) {
    const nt_product *P = arg;
    ht_share share = ht_task_share(P->split_columns ? P->n : P->m, t, tasks);
    if (P->split_columns)
        ht_gemm_nt_block(P, 0, P->m, share.from, share.to);
    else
        ht_gemm_nt_block(P, share.from, share.to, 0, P->n);
}

void ht_gemm_nt(float *C, const float *A, const float *B, const float *bias,
                int64_t m, int64_t n, int64_t k) {
    nt_product P = {C, A, B, bias, m, n, k, 0};
    int threads = m < PARALLEL_MIN_BATCH ? threads_for_streaming(n * k) : threads_for(m, m * n * k);
    if (threads == 1) {
        ht_gemm_nt_block(&P, 0, m, 0, n);
        return;
    }
    /* Each thread reads only its share of B (a layer's weights) when B has rows enough. */
    P.split_columns = n >= (int64_t)threads * NT_COLS * 2;
    threads = (int)min64(threads, P.split_columns ? n : m);
    ht_parallel(threads, nt_task, &P);
}
