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

/* A hook that each thread of ht_linear_bwd_weight_sgd_fwd calls once, before it reads its copy
 * of x and x_next: ready(arg, h), h its ht_thread_index (a pipelined training loop fills the
 * copy there: ht_data.h's ht_batches_ready). */
typedef void (*ht_copy_ready)(void *arg, int thread);
/* ht_linear_bwd_weight_sgd, then y_next[n_next,in] @ W^T with the updated W (no bias): the
 * next step's forward of the same layer, in the same pass over W (a group of W's rows at a
 * time, each thread mostly the same rows at every call). Equal, bit for bit, to the two
 * kernels one after the other. x and x_next hold `copies` equal copies of their batches one
 * after the other (copy c at x + c*n*in), as ht_loader_fill_copies writes them: thread t (the
 * caller 0, worker i i + 1) reads copy t % copies, the one it filled when copies is
 * ht_linear_sgd_fwd_copies, from its own cache instead of parts of one copy from the other
 * cores' (1: one copy). With `ready` (else NULL), on at most `copies` threads, each of which
 * calls ready(ready_arg, t) before it reads its copy. */
HT_EXPORT void ht_linear_bwd_weight_sgd_fwd(float *W, float *buf, const float *dy, const float *x,
                                            int64_t n, int64_t in, int64_t out, float lr,
                                            float momentum, float dampening, float weight_decay,
                                            int nesterov, int first_step, float *y_next,
                                            const float *x_next, int64_t n_next, int copies,
                                            ht_copy_ready ready, void *ready_arg);
/* The number of threads ht_linear_bwd_weight_sgd_fwd shares a step of a batch of n among
 * with the current thread count: the copies of the batches worth filling. */
HT_EXPORT int ht_linear_sgd_fwd_copies(int64_t n, int64_t in, int64_t out);

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

/* ---- 2-d convolution: ht_conv.c ----
 * x[n,c,h,w] (NCHW) convolved with W[oc,c,kh,kw] at stride (sh, sw) with zero padding (ph, pw)
 * gives y[n,oc,oh,ow], oh = (h + 2ph - kh)/sh + 1, ow = (w + 2pw - kw)/sw + 1; requires
 * sh, sw >= 1, ph, pw >= 0, kh <= h + 2ph, kw <= w + 2pw. The padding enters the sums as
 * zeros times the weights (a NaN or infinite weight makes the outputs over the padding NaN).
 * No kernel allocates: `workspace` is the caller's scratch (a compiled model's arena) of at
 * least ht_conv2d_workspace(...) floats for those sizes, any content, clobbered; outputs alias
 * neither inputs nor workspace. Results do not depend on the thread count. */
/* the floats of workspace the conv2d kernels below need for these sizes */
HT_EXPORT int64_t ht_conv2d_workspace(int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh,
                                      int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw);
/* y[n,oc,oh,ow] = conv2d(x[n,c,h,w], W[oc,c,kh,kw]) + b[oc] (no bias when b is NULL) */
HT_EXPORT void ht_conv2d_fwd(float *y, const float *x, const float *W, const float *b,
                             float *workspace, int64_t n, int64_t c, int64_t h, int64_t w,
                             int64_t oc, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                             int64_t ph, int64_t pw);
/* y = relu(ht_conv2d_fwd's y), each output relu'd as it is written (relu as ht_relu_fwd's) */
HT_EXPORT void ht_conv2d_relu_fwd(float *y, const float *x, const float *W, const float *b,
                                  float *workspace, int64_t n, int64_t c, int64_t h, int64_t w,
                                  int64_t oc, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                  int64_t ph, int64_t pw);
/* the floats of workspace ht_conv2d_relu_max_pool2d_fwd and ht_conv2d_pool_bwd_* need */
HT_EXPORT int64_t ht_conv2d_pool_workspace(int64_t c, int64_t h, int64_t w, int64_t oc,
                                           int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                           int64_t ph, int64_t pw);
/* y, idx = ht_max_pool2d_fwd (windows pkh x pkw at stride (psh, psw)) of ht_conv2d_fwd's y,
 * relu'd as ht_relu_fwd: the same bits, without the convolution's outputs in memory */
HT_EXPORT void ht_conv2d_relu_max_pool2d_fwd(float *y, int64_t *idx, const float *x,
                                             const float *W, const float *b, float *workspace,
                                             int64_t n, int64_t c, int64_t h, int64_t w,
                                             int64_t oc, int64_t kh, int64_t kw, int64_t sh,
                                             int64_t sw, int64_t ph, int64_t pw, int64_t pkh,
                                             int64_t pkw, int64_t psh, int64_t psw);
/* dx[n,c,h,w] (= | +=) the gradient of conv2d's input from dy[n,oc,oh,ow] and W[oc,c,kh,kw] */
HT_EXPORT void ht_conv2d_bwd_input(float *dx, const float *dy, const float *W, float *workspace,
                                   int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc,
                                   int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                                   int64_t pw, int accumulate);
/* dW[oc,c,kh,kw] += the gradient of conv2d's weight from dy[n,oc,oh,ow] and x[n,c,h,w] */
HT_EXPORT void ht_conv2d_bwd_weight(float *dW, const float *dy, const float *x, float *workspace,
                                    int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc,
                                    int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                                    int64_t pw);
/* dx[n,c,h,w] (= | +=) ht_conv2d_bwd_input's for dy = ht_relu_max_pool2d_bwd's (gy, y, idx
 * of ht_conv2d_relu_max_pool2d_fwd): the same bits, without dy in memory; workspace: at least
 * ht_conv2d_pool_workspace(...) floats */
HT_EXPORT void ht_conv2d_pool_bwd_input(float *dx, const float *gy, const float *y,
                                        const int64_t *idx, const float *W, float *workspace,
                                        int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc,
                                        int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                        int64_t ph, int64_t pw, int64_t pkh, int64_t pkw,
                                        int64_t psh, int64_t psw, int accumulate);
/* dW[oc,c,kh,kw] += ht_conv2d_bwd_weight's for dy as ht_conv2d_pool_bwd_input's */
HT_EXPORT void ht_conv2d_pool_bwd_weight(float *dW, const float *gy, const float *y,
                                         const int64_t *idx, const float *x, float *workspace,
                                         int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc,
                                         int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                         int64_t ph, int64_t pw, int64_t pkh, int64_t pkw,
                                         int64_t psh, int64_t psw);
/* db[oc] += sum over n, oh, ow of dy[n,oc,oh,ow] */
HT_EXPORT void ht_conv2d_bwd_bias(float *db, const float *dy, int64_t n, int64_t oc, int64_t oh,
                                  int64_t ow);

/* ---- 2-d pooling: ht_pool.c ----
 * Each of `planes` (n*c) input planes x[h,w] is pooled on its own: windows of kh x kw at
 * stride (sh, sw), no padding, oh = (h - kh)/sh + 1, ow = (w - kw)/sw + 1 (torch's
 * padding=0, ceil_mode=False); requires 1 <= kh <= h, 1 <= kw <= w, sh, sw >= 1. Outputs do
 * not alias inputs. */
/* y[planes,oh,ow] = max over each window of x[planes,h,w]; idx[planes,oh,ow] = the flat index
 * (row * w + column) in its plane of the maximum: the first maximum in row-major order, the
 * last NaN when the window holds NaN (as torch's return_indices) */
HT_EXPORT void ht_max_pool2d_fwd(float *y, int64_t *idx, const float *x, int64_t planes,
                                 int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh,
                                 int64_t sw);
/* dx[planes,h,w] (= | +=) dy[planes,oh,ow] added at idx (overlapping windows add up) */
HT_EXPORT void ht_max_pool2d_bwd(float *dx, const float *dy, const int64_t *idx, int64_t planes,
                                 int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh,
                                 int64_t sw, int accumulate);
/* ht_max_pool2d_bwd of relu_grad(dy, y) (each dy[q] taken as y[q] <= 0 ? 0 : dy[q], as
 * ht_relu_bwd), in one pass: the gradient of relu(max_pool2d(x)), y its output */
HT_EXPORT void ht_relu_max_pool2d_bwd(float *dx, const float *dy, const float *y,
                                      const int64_t *idx, int64_t planes, int64_t h, int64_t w,
                                      int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                                      int accumulate);
/* y[planes,oh,ow] = sum over each window of x[planes,h,w] / (kh * kw) */
HT_EXPORT void ht_avg_pool2d_fwd(float *y, const float *x, int64_t planes, int64_t h, int64_t w,
                                 int64_t kh, int64_t kw, int64_t sh, int64_t sw);
/* dx[planes,h,w] (= | +=) dy[planes,oh,ow] / (kh * kw) added over each window */
HT_EXPORT void ht_avg_pool2d_bwd(float *dx, const float *dy, int64_t planes, int64_t h, int64_t w,
                                 int64_t kh, int64_t kw, int64_t sh, int64_t sw, int accumulate);

/* ---- dropout: ht_dropout.c ----
 * Inverted dropout with probability p in [0, 1] (torch's F.dropout in training mode). */
/* mask[numel] = 1 where x is kept, else 0; y[numel] = x * (mask ? 1/(1-p) : 0) (so a dropped
 * NaN or infinity gives NaN, as in torch). Element i is kept when the i-th ht_rng_uniform
 * draw from *state is >= p; *state advances by numel draws when 0 < p < 1 and not at all when
 * p == 0 (y = x, mask all 1) or p == 1 (y = x * 0, mask all 0). */
HT_EXPORT void ht_dropout_fwd(float *y, uint8_t *mask, const float *x, double p,
                              uint64_t *state, int64_t numel);
/* dx[numel] (= | +=) dy * (mask ? 1/(1-p) : 0), with the mask and p of ht_dropout_fwd */
HT_EXPORT void ht_dropout_bwd(float *dx, const float *dy, const uint8_t *mask, double p,
                              int64_t numel, int accumulate);

/* ---- Adam and AdamW: ht_adam.c ---- */
/* w[numel], exp_avg[numel], exp_avg_sq[numel] (and max_exp_avg_sq[numel] when amsgrad; may be
 * NULL otherwise) <- step number `step` (1-based) of torch.optim.Adam (decoupled_weight_decay
 * = 0: g += weight_decay * w) or torch.optim.AdamW (1: w *= 1 - lr * weight_decay) with
 * gradient g[numel] (negated when maximize), in torch's order of operations. The state buffers
 * start zeroed (torch's initial state). Hyperparameters are doubles, as in Python. */
HT_EXPORT void ht_adam_step(float *w, const float *g, float *exp_avg, float *exp_avg_sq,
                            float *max_exp_avg_sq, int64_t numel, int64_t step, double lr,
                            double beta1, double beta2, double eps, double weight_decay,
                            int decoupled_weight_decay, int amsgrad, int maximize);

/* ---- tensor operations: ht_tensor_ops.c ----
 * Along one dim a tensor is seen as [outer, n, inner] (the products of the dims before and
 * after it). Outputs do not alias inputs, except in the elementwise kernels. */
/* y[numel] = a / b */
HT_EXPORT void ht_div(float *y, const float *a, const float *b, int64_t numel);
/* db[numel] (= | +=) -dy * y / b: the gradient of the divisor b of y = a / b (or y = s / b) */
HT_EXPORT void ht_div_bwd_divisor(float *db, const float *dy, const float *y, const float *b,
                                  int64_t numel, int accumulate);
/* y[numel] = x / s */
HT_EXPORT void ht_div_scalar(float *y, const float *x, float s, int64_t numel);
/* y[numel] = s / x */
HT_EXPORT void ht_scalar_div(float *y, float s, const float *x, int64_t numel);
/* y[numel] = x + s */
HT_EXPORT void ht_add_scalar(float *y, const float *x, float s, int64_t numel);
/* y[numel] = exp(x) (its gradient dy * y) */
HT_EXPORT void ht_exp_fwd(float *y, const float *x, int64_t numel);
/* y[numel] = log(x) (its gradient dy / x) */
HT_EXPORT void ht_log_fwd(float *y, const float *x, int64_t numel);
/* y[numel] = x < lo ? lo : x (NaN stays NaN) */
HT_EXPORT void ht_clamp_min_fwd(float *y, const float *x, float lo, int64_t numel);
/* dx[numel] (= | +=) x >= lo ? dy : 0 */
HT_EXPORT void ht_clamp_min_bwd(float *dx, const float *dy, const float *x, float lo,
                                int64_t numel, int accumulate);
/* y[numel] = x > hi ? hi : x (NaN stays NaN) */
HT_EXPORT void ht_clamp_max_fwd(float *y, const float *x, float hi, int64_t numel);
/* dx[numel] (= | +=) x <= hi ? dy : 0 */
HT_EXPORT void ht_clamp_max_bwd(float *dx, const float *dy, const float *x, float hi,
                                int64_t numel, int accumulate);
/* y[numel] = (float)x */
HT_EXPORT void ht_i64_to_f32(float *y, const int64_t *x, int64_t numel);
/* y[outer,inner] = sum over j of x[outer,n,inner] */
HT_EXPORT void ht_sum_dim(float *y, const float *x, int64_t outer, int64_t n, int64_t inner);
/* y[outer,inner] = sum over j of x[outer,n,inner] / n */
HT_EXPORT void ht_mean_dim(float *y, const float *x, int64_t outer, int64_t n, int64_t inner);
/* y[outer,n,inner] = x[outer,inner] for each j (a broadcast; the gradient of ht_sum_dim) */
HT_EXPORT void ht_expand_dim(float *y, const float *x, int64_t outer, int64_t n, int64_t inner);
/* dx[outer,n,inner] (= | +=) dy[outer,inner] / n */
HT_EXPORT void ht_mean_dim_bwd(float *dx, const float *dy, int64_t outer, int64_t n,
                               int64_t inner, int accumulate);
/* y[outer,length,inner] = x[outer, start:start+length, inner] of x[outer,n,inner] */
HT_EXPORT void ht_narrow_fwd(float *y, const float *x, int64_t outer, int64_t n, int64_t start,
                             int64_t length, int64_t inner);
/* the same of int64 tensors */
HT_EXPORT void ht_narrow_i64(int64_t *y, const int64_t *x, int64_t outer, int64_t n,
                             int64_t start, int64_t length, int64_t inner);
/* dx[outer,n,inner] (= | +=) dy[outer,length,inner] at start:start+length, 0 elsewhere */
HT_EXPORT void ht_narrow_bwd(float *dx, const float *dy, int64_t outer, int64_t n, int64_t start,
                             int64_t length, int64_t inner, int accumulate);
/* y[outer,na+nb,inner] = a[outer,na,inner] then b[outer,nb,inner] */
HT_EXPORT void ht_cat_fwd(float *y, const float *a, const float *b, int64_t outer, int64_t na,
                          int64_t nb, int64_t inner);
/* the same of int64 tensors */
HT_EXPORT void ht_cat_i64(int64_t *y, const int64_t *a, const int64_t *b, int64_t outer,
                          int64_t na, int64_t nb, int64_t inner);
/* dx (= | +=) the part of dy[outer,na+nb,inner] that was a (second = 0) or b (second = 1) */
HT_EXPORT void ht_cat_bwd(float *dx, const float *dy, int64_t outer, int64_t na, int64_t nb,
                          int64_t inner, int second, int accumulate);
/* y[planes,cols,rows] = x[planes,rows,cols] transposed */
HT_EXPORT void ht_transpose(float *y, const float *x, int64_t planes, int64_t rows, int64_t cols);
/* y[planes,m,n] = a[planes,m,k] @ b[planes,k,n] (GEMM engines of ht_gemm.h) */
HT_EXPORT void ht_matmul_fwd(float *y, const float *a, const float *b, int64_t planes, int64_t m,
                             int64_t k, int64_t n);
/* da[planes,m,k] = dy[planes,m,n] @ b[planes,k,n]^T */
HT_EXPORT void ht_matmul_bwd_a(float *da, const float *dy, const float *b, int64_t planes,
                               int64_t m, int64_t k, int64_t n);
/* db[planes,k,n] (= | +=) a[planes,m,k]^T @ dy[planes,m,n] */
HT_EXPORT void ht_matmul_bwd_b(float *db, const float *dy, const float *a, int64_t planes,
                               int64_t m, int64_t k, int64_t n, int accumulate);

#endif
