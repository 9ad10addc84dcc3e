/* ht_gemm_impl.h (private to the ht_gemm*.c files): what the parts of the matrix-product
 * engine of ht_gemm.h share. The engine is written once for every vector unit (ht_vec.h):
 * register-blocked tiles sized from the vector width and register count, balanced over the
 * shape (50 rows in tiles of at most 8 are 7 tiles of 7 or 8, not 6 of 8 and one of 2), and
 * products of a batch split over threads by output tiles. It is split over files that the
 * runtime's build compiles in parallel (its tile instances are most of the runtime's
 * compile time):
 *   ht_gemm_nt.c      C = A B^T
 *   ht_gemm_nn.c      C (epilogue) A B, and column sums
 *   ht_gemm_fused.c   a training step's update of W fused with the next step's forward
 *
 * Every output element is computed the same way whatever the tiling, so results do not
 * depend on the shape of the tile that computed them nor on the thread count, and the fused
 * kernels equal the unfused ones bit for bit:
 * - C = A B^T accumulates each output in one vector of partial sums, a fused multiply-add
 *   per HT_VL-float chunk of k in order (the last chunk zero-padded), then sums its lanes
 *   with ht_vsum_each's tree;
 * - C = A B accumulates each output from 0 with one fused multiply-add per term, p in order.
 * Neither operand needs packing: both are read along their contiguous dimension. */
#ifndef HT_GEMM_IMPL_H
#define HT_GEMM_IMPL_H

#include "ht_gemm.h"
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
#else
#define NT_ROWS 2
#define NT_COLS 4
#define MV_COLS 8
#define NN_ROWS 6
#endif
#define NN_VECS HT_GEMM_NN_VECS

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* The slot of a table of 1 << bits that remembers something about the array at p (Fibonacci
 * hashing of its address). */
static inline unsigned address_slot(const void *p, int bits) {
    return (unsigned)((uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull >> (64 - bits));
}

/* n split into `parts` near-equal parts, the first `extra` one larger than the others
 * (no division per part: these are computed per tile). */
typedef struct {
    int64_t parts, size, extra;
} split;

static inline split split_in(int64_t n, int64_t parts) {
    return parts > 0 ? (split){parts, n / parts, n % parts} : (split){0, 0, 0}; /* n == 0 */
}
/* The fewest parts of at most `most`. */
static inline split split_at_most(int64_t n, int64_t most) {
    return split_in(n, (n + most - 1) / most);
}
static inline int64_t part_size(split s, int64_t p) { return s.size + (p < s.extra); }
static inline int64_t part_start(split s, int64_t p) { return p * s.size + min64(p, s.extra); }

/* A product is split over threads when its batch has this many rows and each thread gets
 * at least this many multiply-adds (a few microseconds: handing out a task costs well under
 * one). */
#define PARALLEL_MIN_BATCH 16
#define PARALLEL_MIN_FMAS_PER_THREAD (1 << 17)

/* The number of threads for a product with a batch of `batch` rows and `fmas` multiply-adds. */
static inline int threads_for(int64_t batch, int64_t fmas) {
    int threads = ht_get_num_threads();
    if (threads <= 1 || batch < PARALLEL_MIN_BATCH) return 1;
    int64_t worth = fmas / PARALLEL_MIN_FMAS_PER_THREAD;
    return (int)min64(threads, worth > 1 ? worth : 1);
}

/* A product of a few rows (a batch of one: a matrix-vector product) is bound by reading B
 * from memory, which several cores do faster than one: it is split over threads by rows of
 * B when each gets at least this many floats of it. */
#define PARALLEL_MIN_STREAMED_FLOATS (1 << 18)

/* The number of threads for a product of a few rows that reads `floats` floats of B. */
static inline int threads_for_streaming(int64_t floats) {
    int64_t worth = floats / PARALLEL_MIN_STREAMED_FLOATS;
    return (int)min64(ht_get_num_threads(), worth > 1 ? worth : 1);
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

/* C[m,n] = A[m,k] B[n,k]^T (+ bias[n]): ht_gemm_nt's arguments. */
typedef struct {
    float *C;
    const float *A, *B, *bias;
    int64_t m, n, k;
    int split_columns; /* threads take columns of C (rows of B), else rows */
} nt_product;

/* Rows [i0, i1) by columns [j0, j1) of the product (ht_gemm_nt.c). */
HT_INTERNAL void ht_gemm_nt_block(const nt_product *P, int64_t i0, int64_t i1, int64_t j0,
                                  int64_t j1);

/* ht_gemm_nn's arguments. */
typedef struct {
    float *C, *buf;
    const float *A, *B;
    int64_t a_row, a_col, m, n, k;
    ht_epilogue epilogue;
    ht_sgd_params sgd;
    int split_vectors; /* threads take columns of C (in whole vectors), else rows */
    const int64_t *b_rows; /* B's row p at B + b_rows[p]; NULL: at B + p*n */
} nn_product;

/* Rows [i0, i1) by the columns of vectors [v0, v1) of the product (ht_gemm_nn.c). */
HT_INTERNAL void ht_gemm_nn_block(const nn_product *P, int64_t i0, int64_t i1, int64_t v0,
                                  int64_t v1);

#endif
