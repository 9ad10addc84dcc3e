/* ht_kernels.h: the tensor kernels compiled models call, forward and backward twins.
 *
 * All tensors are float32, row-major and contiguous; sizes are int64_t, labels int64_t.
 * `accumulate` = 0 overwrites the gradient (which may hold garbage), 1 adds to it.
 * Elementwise outputs may be the same array as an input (in place); arrays never partially
 * overlap, and the outputs of the linear kernels never alias their inputs.
 * Backward kernels of activations and softmaxes take the forward *output* y.
 * Kernels that can fail return HT_OK / HT_ERROR (message in ht_last_error()). */
#ifndef HT_KERNELS_H
#define HT_KERNELS_H

#include <stdint.h>

#include "ht_core.h"

/* ---- linear layer: ht_linear.c ---- */
/* y[n,out] = x[n,in] @ W[out,in]^T + b[out] (no bias when b is NULL) */
HT_EXPORT void ht_linear_fwd(float *y, const float *x, const float *W, const float *b,
                             int64_t n, int64_t in, int64_t out);
/* dx[n,in] (= | +=) dy[n,out] @ W[out,in] */
HT_EXPORT void ht_linear_bwd_input(float *dx, const float *dy, const float *W,
                                   int64_t n, int64_t in, int64_t out, int accumulate);
/* dW[out,in] += dy[n,out]^T @ x[n,in] */
HT_EXPORT void ht_linear_bwd_weight(float *dW, const float *dy, const float *x,
                                    int64_t n, int64_t in, int64_t out);
/* db[cols] += sum over rows of dy[n,cols] (gradient of a bias / broadcast add) */
HT_EXPORT void ht_sum_rows(float *db, const float *dy, int64_t n, int64_t cols);

/* ---- fused linear backward + SGD step: ht_linear_sgd.c ----
 * Same bits as ht_linear_bwd_weight / ht_sum_rows into a zeroed gradient followed by
 * ht_sgd_step, without materialising the gradient. buf may be NULL when momentum == 0. */
/* W[out,in], buf[out,in] <- SGD step with g = dy[n,out]^T @ x[n,in] */
HT_EXPORT void ht_linear_bwd_weight_sgd(float *W, float *buf, const float *dy, const float *x,
                                        int64_t n, int64_t in, int64_t out, float lr,
                                        float momentum, float dampening, float weight_decay,
                                        int nesterov, int first_step);
/* b[out], buf[out] <- SGD step with g = sum over rows of dy[n,out] */
HT_EXPORT void ht_bias_bwd_sgd(float *b, float *buf, const float *dy, int64_t n, int64_t out,
                               float lr, float momentum, float dampening, float weight_decay,
                               int nesterov, int first_step);

/* ht_linear_bwd_weight_sgd, then y_next[n_next,in] @ W^T with the updated W (no bias): the
 * next step's forward of the same layer, in the same pass over W when n == n_next == 1.
 * Equal, bit for bit, to the two kernels one after the other. */
HT_EXPORT void ht_linear_bwd_weight_sgd_fwd(float *W, float *buf, const float *dy, const float *x,
                                            int64_t n, int64_t in, int64_t out, float lr,
                                            float momentum, float dampening, float weight_decay,
                                            int nesterov, int first_step, float *y_next,
                                            const float *x_next, int64_t n_next);

/* ---- optimizer: ht_optim.c ---- */
/* w[numel], buf[numel] <- torch.optim.SGD step with gradient g[numel]; first_step = 1 on the
 * step that creates the momentum buffer (torch: buf = g); buf may be NULL when momentum == 0 */
HT_EXPORT void ht_sgd_step(float *w, const float *g, float *buf, int64_t numel, float lr,
                           float momentum, float dampening, float weight_decay, int nesterov,
                           int first_step);

/* ---- activations: ht_activation.c ---- */
/* y[numel] = max(x, 0); NaN stays NaN, -0.0 stays -0.0 (torch) */
HT_EXPORT void ht_relu_fwd(float *y, const float *x, int64_t numel);
/* dx[numel] (= | +=) 0 where y <= 0, else dy (so dy where y is NaN, as torch) */
HT_EXPORT void ht_relu_bwd(float *dx, const float *dy, const float *y, int64_t numel, int accumulate);
/* y[numel] = 1 / (1 + exp(-x)) */
HT_EXPORT void ht_sigmoid_fwd(float *y, const float *x, int64_t numel);
/* dx[numel] (= | +=) dy * (1 - y) * y */
HT_EXPORT void ht_sigmoid_bwd(float *dx, const float *dy, const float *y, int64_t numel, int accumulate);
/* y[numel] = tanh(x) */
HT_EXPORT void ht_tanh_fwd(float *y, const float *x, int64_t numel);
/* dx[numel] (= | +=) dy * (1 - y*y) */
HT_EXPORT void ht_tanh_bwd(float *dx, const float *dy, const float *y, int64_t numel, int accumulate);

/* ---- elementwise arithmetic: ht_elementwise.c ----
 * Backward: add -> ht_axpy(da, 1, dy) / ht_copy; sub -> ht_axpy(db, -1, dy);
 * scale -> ht_scale / ht_axpy(dx, s, dy); add_rowvec -> dx as add, dv via ht_sum_rows. */
/* y[numel] = a + b */
HT_EXPORT void ht_add(float *y, const float *a, const float *b, int64_t numel);
/* y[numel] = a - b */
HT_EXPORT void ht_sub(float *y, const float *a, const float *b, int64_t numel);
/* y[numel] = a * b */
HT_EXPORT void ht_mul(float *y, const float *a, const float *b, int64_t numel);
/* da[numel] (= | +=) dy * b, db[numel] (= | +=) dy * a; either output may be NULL */
HT_EXPORT void ht_mul_bwd(float *da, float *db, const float *dy, const float *a, const float *b,
                          int64_t numel, int accumulate);
/* y[numel] = s * x */
HT_EXPORT void ht_scale(float *y, const float *x, float s, int64_t numel);
/* y[rows,cols] = x[rows,cols] + v[cols] (v broadcast over rows) */
HT_EXPORT void ht_add_rowvec(float *y, const float *x, const float *v, int64_t rows, int64_t cols);
/* y[numel] += a * x */
HT_EXPORT void ht_axpy(float *y, float a, const float *x, int64_t numel);
/* y[numel] = value */
HT_EXPORT void ht_fill(float *y, float value, int64_t numel);
/* y[numel] = x */
HT_EXPORT void ht_copy(float *y, const float *x, int64_t numel);

/* ---- softmax family: ht_softmax.c (rows are independent, stable: the row max is subtracted).
 * As in torch, a row holding NaN or +inf, or all -inf, comes out all NaN. ---- */
/* y[rows,cols] = x - max_row(x) - log(sum_row(exp(x - max_row(x)))) */
HT_EXPORT void ht_log_softmax_fwd(float *y, const float *x, int64_t rows, int64_t cols);
/* dx[rows,cols] (= | +=) dy - exp(y) * sum_row(dy) */
HT_EXPORT void ht_log_softmax_bwd(float *dx, const float *dy, const float *y, int64_t rows,
                                  int64_t cols, int accumulate);
/* y[rows,cols] = exp(x - max_row(x)) / sum_row(exp(x - max_row(x))) */
HT_EXPORT void ht_softmax_fwd(float *y, const float *x, int64_t rows, int64_t cols);
/* dx[rows,cols] (= | +=) y * (dy - sum_row(dy * y)) */
HT_EXPORT void ht_softmax_bwd(float *dx, const float *dy, const float *y, int64_t rows,
                              int64_t cols, int accumulate);

/* ---- losses: ht_loss.c ---- */
/* *loss = -sum_i logp[i, target[i]] / (mean ? rows : 1); HT_ERROR if a target is outside [0, cols) */
HT_EXPORT int ht_nll_loss_fwd(float *loss, const float *logp, const int64_t *target,
                              int64_t rows, int64_t cols, int mean);
/* dlogp[rows,cols] (= | +=) -dloss / (mean ? rows : 1) at [i, target[i]], 0 elsewhere
 * (targets must have passed ht_nll_loss_fwd; out-of-range ones are skipped) */
HT_EXPORT void ht_nll_loss_bwd(float *dlogp, float dloss, const int64_t *target, int64_t rows,
                               int64_t cols, int mean, int accumulate);
/* *loss = sum((x - target)^2) / numel */
HT_EXPORT void ht_mse_loss_fwd(float *loss, const float *x, const float *target, int64_t numel);
/* dx[numel] (= | +=) (2 / numel) * (x - target) * dloss */
HT_EXPORT void ht_mse_loss_bwd(float *dx, float dloss, const float *x, const float *target,
                               int64_t numel, int accumulate);

/* ---- whole-tensor reductions: ht_reduce.c ---- */
/* *out = sum(x[numel]) */
HT_EXPORT void ht_sum_all(float *out, const float *x, int64_t numel);
/* dx[numel] (= | +=) dout */
HT_EXPORT void ht_sum_all_bwd(float *dx, float dout, int64_t numel, int accumulate);
/* *out = sum(x[numel]) / numel */
HT_EXPORT void ht_mean_all(float *out, const float *x, int64_t numel);
/* dx[numel] (= | +=) dout / numel */
HT_EXPORT void ht_mean_all_bwd(float *dx, float dout, int64_t numel, int accumulate);

/* ---- accuracy: ht_metrics.c ---- */
/* idx[rows] = argmax over cols of x[rows,cols]; first maximum wins, NaN is the maximum (torch) */
HT_EXPORT void ht_argmax_rows(int64_t *idx, const float *x, int64_t rows, int64_t cols);
/* number of i in [0, n) with a[i] == b[i] */
HT_EXPORT int64_t ht_count_equal(const int64_t *a, const int64_t *b, int64_t n);

#endif
