/* ht_gemm.h (private to c_runtime): the matrix-product engines behind ht_linear*.c, in
 * ht_gemm_nt.c, ht_gemm_nn.c and ht_gemm_fused.c (ht_gemm_impl.h). All matrices are row-major
 * with contiguous rows. */
#ifndef HT_GEMM_H
#define HT_GEMM_H

#include <stddef.h>
#include <stdint.h>

#include "ht_kernels.h"
#include "ht_sgd_rule.h"
#include "ht_vec.h"

/* The vectors of columns ht_gemm_nn's tiles span at most: B's columns in panels of
 * HT_GEMM_NN_PANEL floats, each read once per tile of rows (callers size blocks of B by it). */
#if HT_VEC_REGS >= 32
#define HT_GEMM_NN_VECS 3
#else
#define HT_GEMM_NN_VECS 2
#endif
#define HT_GEMM_NN_PANEL (HT_GEMM_NN_VECS * HT_VL)

/* Not part of the runtime's ABI: kept out of the shared library's symbol table. */
#define HT_INTERNAL __attribute__((visibility("hidden")))

/* What a product does with its result g[i,j]. */
typedef enum {
    HT_EPI_STORE, /* C = g */
    HT_EPI_ADD,   /* C += g */
    HT_EPI_SGD    /* ht_sgd_rule(&C[i,j], &buf[i,j], g, sgd): C holds the parameters */
} ht_epilogue;

/* The products of a batch of at least 16 samples (the rows of A in ht_gemm_nt; `batch`, rows
 * or k, in ht_gemm_nn) are split over up to ht_get_num_threads() threads when they are big
 * enough, and so is ht_gemm_nt of fewer rows when B is big enough that reading it is what
 * takes the time (a batch of one through a large layer); the results do not depend on it. */

/* C[m,n] = A[m,k] @ B[n,k]^T (+ bias[n] unless bias is NULL) */
HT_INTERNAL void ht_gemm_nt(float *C, const float *A, const float *B, const float *bias,
                            int64_t m, int64_t n, int64_t k);

/* g[m,n] = sum_p A(i,p) B[p,n], A(i,p) = A[i*a_row_stride + p*a_col_stride], B is [k,n];
 * applied to C[m,n] (and buf[m,n] for HT_EPI_SGD, may be NULL when sgd.momentum == 0). */
HT_INTERNAL void ht_gemm_nn(float *C, float *buf, const float *A, int64_t a_row_stride,
                            int64_t a_col_stride, const float *B, int64_t m, int64_t n, int64_t k,
                            int64_t batch, ht_epilogue epilogue, ht_sgd_params sgd);

/* C[m,n] = sum_p A(i,p) B_p[0, n), B_p = B + b_rows[p] (rows anywhere, apart or overlapping:
 * an implicit im2col), each element as ht_gemm_nn computes it; on one thread. */
HT_INTERNAL void ht_gemm_nn_rows(float *C, const float *A, int64_t a_row_stride,
                                 int64_t a_col_stride, const float *B, const int64_t *b_rows,
                                 int64_t m, int64_t n, int64_t k);

/* W[m,n] <- SGD step with g = dy[k,m]^T @ x[k,n] (as ht_gemm_nn), then y[k_next,m] =
 * x_next[k_next,n] @ W^T with the updated W (as ht_gemm_nt); W in cache between the two.
 * x and x_next hold `copies` equal copies of their matrices one after the other: thread h
 * (ht_thread_index) reads copy h % copies, which it wrote when copies is the number of
 * threads the product uses (ht_gemm_sgd_then_nt_threads). With `ready` (else NULL), each
 * thread calls ready(ready_arg, h) before it first reads its copy, and the threads are at
 * most `copies`. */
HT_INTERNAL void ht_gemm_sgd_then_nt(float *W, float *buf, const float *dy, const float *x,
                                     int64_t m, int64_t n, int64_t k, ht_sgd_params sgd, float *y,
                                     const float *x_next, int64_t k_next, int copies,
                                     ht_copy_ready ready, void *ready_arg);
/* The number of threads ht_gemm_sgd_then_nt shares W's rows among with the current thread
 * count (the work it is worth). */
HT_INTERNAL int ht_gemm_sgd_then_nt_threads(int64_t m, int64_t n, int64_t k, int64_t k_next);
/* The rows of W's m that the caller (thread 0) takes in ht_gemm_sgd_then_nt's next call on
 * `threads` threads: its even share, less what the last calls for W showed it should give up
 * to the workers (ht_gemm_fused.c); all m on one thread. */
HT_INTERNAL int64_t ht_gemm_sgd_then_nt_caller_rows(const float *W, int64_t m, int threads);

/* W[m,n] <- SGD step with g = dy[m] (x) x[n] (as ht_gemm_nn with k = 1, on one thread), then
 * y[m] = W[m,n] @ x_next[n] with the updated W (as ht_gemm_nt with one row): one pass over W,
 * which with plain SGD only reads the rows whose dy is zero (they stay as they are). */
HT_INTERNAL void ht_gemm_rank1_sgd_then_nt(float *W, float *buf, const float *dy, const float *x,
                                           int64_t m, int64_t n, ht_sgd_params sgd, float *y,
                                           const float *x_next);

/* g[cols] = sum over rows of X[rows,cols], applied to C[cols] (HT_EPI_ADD or HT_EPI_SGD). */
HT_INTERNAL void ht_gemm_colsum(float *C, float *buf, const float *X, int64_t rows,
                                int64_t cols, ht_epilogue epilogue, ht_sgd_params sgd);

#endif
