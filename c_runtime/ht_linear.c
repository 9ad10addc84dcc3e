/* ht_linear.c: the linear layer y = x W^T + b and its gradients (engines in ht_gemm*.c). */
#include "ht_kernels.h"

#include "ht_gemm.h"

static const ht_sgd_params no_sgd = {0};

void ht_linear_fwd(float *y, const float *x, const float *W, const float *b,
                   int64_t n, int64_t in, int64_t out) {
    ht_gemm_nt(y, x, W, b, n, out, in);
}

/* dx[i,:] = sum_o dy[i,o] W[o,:] */
void ht_linear_bwd_input(float *dx, const float *dy, const float *W,
                         int64_t n, int64_t in, int64_t out, int accumulate) {
    ht_gemm_nn(dx, NULL, dy, out, 1, W, n, in, out, n, accumulate ? HT_EPI_ADD : HT_EPI_STORE,
               no_sgd);
}

/* dW[o,:] += sum_i dy[i,o] x[i,:] */
void ht_linear_bwd_weight(float *dW, const float *dy, const float *x,
                          int64_t n, int64_t in, int64_t out) {
    ht_gemm_nn(dW, NULL, dy, 1, out, x, out, in, n, n, HT_EPI_ADD, no_sgd);
}

void ht_sum_rows(float *db, const float *dy, int64_t n, int64_t cols) {
    ht_gemm_colsum(db, NULL, dy, n, cols, HT_EPI_ADD, no_sgd);
}
