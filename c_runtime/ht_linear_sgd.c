/* ht_linear_sgd.c: linear-layer gradients consumed directly by an SGD step, for training
 * loops where a parameter's gradient feeds nothing but the optimizer. */
#include "ht_kernels.h"

#include "ht_gemm.h"

/* Same products as ht_linear_bwd_weight / ht_sum_rows (identical summation order), so the
 * results match the unfused path bit for bit. */
void ht_linear_bwd_weight_sgd(float *W, float *buf, const float *dy, const float *x,
                              int64_t n, int64_t in, int64_t out, float lr,
                              float momentum, float dampening, float weight_decay,
                              int nesterov, int first_step) {
    ht_sgd_params sgd = {lr, momentum, dampening, weight_decay, nesterov, first_step};
    ht_gemm_nn(W, buf, dy, 1, out, x, out, in, n, n, HT_EPI_SGD, sgd);
}

void ht_bias_bwd_sgd(float *b, float *buf, const float *dy, int64_t n, int64_t out,
                     float lr, float momentum, float dampening, float weight_decay,
                     int nesterov, int first_step) {
    ht_sgd_params sgd = {lr, momentum, dampening, weight_decay, nesterov, first_step};
    ht_gemm_colsum(b, buf, dy, n, out, HT_EPI_SGD, sgd);
}

void ht_linear_bwd_weight_sgd_fwd(float *W, float *buf, const float *dy, const float *x,
                                  int64_t n, int64_t in, int64_t out, float lr, float momentum,
                                  float dampening, float weight_decay, int nesterov,
                                  int first_step, float *y_next, const float *x_next,
                                  int64_t n_next, int copies, ht_copy_ready ready,
                                  void *ready_arg) {
    ht_sgd_params sgd = {lr, momentum, dampening, weight_decay, nesterov, first_step};
    if (n == 1 && n_next == 1) {
        if (ready) ready(ready_arg, 0);
        ht_gemm_rank1_sgd_then_nt(W, buf, dy, x, out, in, sgd, y_next, x_next);
    } else {
        ht_gemm_sgd_then_nt(W, buf, dy, x, out, in, n, sgd, y_next, x_next, n_next, copies,
                            ready, ready_arg);
    }
}

int ht_linear_sgd_fwd_copies(int64_t n, int64_t in, int64_t out) {
    return n == 1 ? 1 : ht_gemm_sgd_then_nt_threads(out, in, n, n);
}
