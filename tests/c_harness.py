"""Builds c_runtime/ into a throwaway shared library for kernel and data tests.

    ffi, lib = load_runtime('''float ht_example(float*, int64_t);''')

The library is compiled once per set of extra flags and opened once per cdef. Kernel tests
load KERNELS_CDEF for each of BUILDS and call kernels on numpy arrays through ptr().
"""
import os
import pathlib
import platform
import subprocess
import tempfile

import cffi
import numpy as np
import torch

from hytorch.build import FLAGS

RUNTIME_DIR = pathlib.Path(__file__).resolve().parent.parent / "c_runtime"
_libraries = {}
_loaded = {}


def _build(extra_flags):
    if extra_flags not in _libraries:
        sources = sorted(str(p) for p in RUNTIME_DIR.glob("*.c"))
        out = pathlib.Path(tempfile.mkdtemp(prefix="ht_rt_")) / "libht_test.so"
        cc = os.environ.get("CC", "cc")
        # The flags compiled models use, so the kernels are tested as they run.
        cmd = [cc, *FLAGS, "-shared", "-Wall", "-I", str(RUNTIME_DIR), *extra_flags, *sources,
               "-o", str(out), "-lm"]
        subprocess.run(cmd, check=True)
        _libraries[extra_flags] = out
    return _libraries[extra_flags]


def load_runtime(cdef, extra_flags=()):
    """Compile every c_runtime/*.c into one .so (once per flag set) and dlopen it with `cdef`."""
    key = (cdef, tuple(extra_flags))
    if key not in _loaded:
        ffi = cffi.FFI()
        ffi.cdef(cdef)
        _loaded[key] = (ffi, ffi.dlopen(str(_build(tuple(extra_flags)))))
    return _loaded[key]


# The declarations of ht_kernels.h (test_kernels.py's test_cdef_matches_header keeps the two in step).
KERNELS_CDEF = """
const char *ht_last_error(void);

void ht_linear_fwd(float *y, const float *x, const float *W, const float *b, int64_t n, int64_t in, int64_t out);
void ht_linear_bwd_input(float *dx, const float *dy, const float *W, int64_t n, int64_t in, int64_t out, int accumulate);
void ht_linear_bwd_weight(float *dW, const float *dy, const float *x, int64_t n, int64_t in, int64_t out);
void ht_sum_rows(float *db, const float *dy, int64_t n, int64_t cols);
void ht_linear_bwd_weight_sgd(float *W, float *buf, const float *dy, const float *x, int64_t n, int64_t in, int64_t out, float lr, float momentum, float dampening, float weight_decay, int nesterov, int first_step);
void ht_bias_bwd_sgd(float *b, float *buf, const float *dy, int64_t n, int64_t out, float lr, float momentum, float dampening, float weight_decay, int nesterov, int first_step);
typedef void (*ht_copy_ready)(void *arg, int thread);
void ht_linear_bwd_weight_sgd_fwd(float *W, float *buf, const float *dy, const float *x, int64_t n, int64_t in, int64_t out, float lr, float momentum, float dampening, float weight_decay, int nesterov, int first_step, float *y_next, const float *x_next, int64_t n_next, int copies, ht_copy_ready ready, void *ready_arg);
int ht_linear_sgd_fwd_copies(int64_t n, int64_t in, int64_t out);
void ht_sgd_step(float *w, const float *g, float *buf, int64_t numel, float lr, float momentum, float dampening, float weight_decay, int nesterov, int first_step);

void ht_relu_fwd(float *y, const float *x, int64_t numel);
void ht_relu_bwd(float *dx, const float *dy, const float *y, int64_t numel, int accumulate);
void ht_sigmoid_fwd(float *y, const float *x, int64_t numel);
void ht_sigmoid_bwd(float *dx, const float *dy, const float *y, int64_t numel, int accumulate);
void ht_tanh_fwd(float *y, const float *x, int64_t numel);
void ht_tanh_bwd(float *dx, const float *dy, const float *y, int64_t numel, int accumulate);

void ht_add(float *y, const float *a, const float *b, int64_t numel);
void ht_sub(float *y, const float *a, const float *b, int64_t numel);
void ht_mul(float *y, const float *a, const float *b, int64_t numel);
void ht_mul_bwd(float *da, float *db, const float *dy, const float *a, const float *b, int64_t numel, int accumulate);
void ht_scale(float *y, const float *x, float s, int64_t numel);
void ht_add_rowvec(float *y, const float *x, const float *v, int64_t rows, int64_t cols);
void ht_axpy(float *y, float a, const float *x, int64_t numel);
void ht_fill(float *y, float value, int64_t numel);
void ht_copy(float *y, const float *x, int64_t numel);

void ht_log_softmax_fwd(float *y, const float *x, int64_t rows, int64_t cols);
void ht_log_softmax_bwd(float *dx, const float *dy, const float *y, int64_t rows, int64_t cols, int accumulate);
void ht_softmax_fwd(float *y, const float *x, int64_t rows, int64_t cols);
void ht_softmax_bwd(float *dx, const float *dy, const float *y, int64_t rows, int64_t cols, int accumulate);

int ht_nll_loss_fwd(float *loss, const float *logp, const int64_t *target, int64_t rows, int64_t cols, int mean);
void ht_nll_loss_bwd(float *dlogp, float dloss, const int64_t *target, int64_t rows, int64_t cols, int mean, int accumulate);
void ht_mse_loss_fwd(float *loss, const float *x, const float *target, int64_t numel);
void ht_mse_loss_bwd(float *dx, float dloss, const float *x, const float *target, int64_t numel, int accumulate);

void ht_sum_all(float *out, const float *x, int64_t numel);
void ht_sum_all_bwd(float *dx, float dout, int64_t numel, int accumulate);
void ht_mean_all(float *out, const float *x, int64_t numel);
void ht_mean_all_bwd(float *dx, float dout, int64_t numel, int accumulate);

void ht_argmax_rows(int64_t *idx, const float *x, int64_t rows, int64_t cols);
int64_t ht_count_equal(const int64_t *a, const int64_t *b, int64_t n);

int64_t ht_conv2d_workspace(int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw);
void ht_conv2d_fwd(float *y, const float *x, const float *W, const float *b, float *workspace, int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw);
void ht_conv2d_relu_fwd(float *y, const float *x, const float *W, const float *b, float *workspace, int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw);
int64_t ht_conv2d_pool_workspace(int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw);
void ht_conv2d_relu_max_pool2d_fwd(float *y, int64_t *idx, const float *x, const float *W, const float *b, float *workspace, int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t pkh, int64_t pkw, int64_t psh, int64_t psw);
void ht_conv2d_bwd_input(float *dx, const float *dy, const float *W, float *workspace, int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int accumulate);
void ht_conv2d_bwd_weight(float *dW, const float *dy, const float *x, float *workspace, int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw);
void ht_conv2d_pool_bwd_input(float *dx, const float *gy, const float *y, const int64_t *idx, const float *W, float *workspace, int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t pkh, int64_t pkw, int64_t psh, int64_t psw, int accumulate);
void ht_conv2d_pool_bwd_weight(float *dW, const float *gy, const float *y, const int64_t *idx, const float *x, float *workspace, int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t pkh, int64_t pkw, int64_t psh, int64_t psw);
void ht_conv2d_bwd_bias(float *db, const float *dy, int64_t n, int64_t oc, int64_t oh, int64_t ow);

void ht_max_pool2d_fwd(float *y, int64_t *idx, const float *x, int64_t planes, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw);
void ht_max_pool2d_bwd(float *dx, const float *dy, const int64_t *idx, int64_t planes, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int accumulate);
void ht_relu_max_pool2d_bwd(float *dx, const float *dy, const float *y, const int64_t *idx, int64_t planes, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int accumulate);
void ht_avg_pool2d_fwd(float *y, const float *x, int64_t planes, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw);
void ht_avg_pool2d_bwd(float *dx, const float *dy, int64_t planes, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int accumulate);

void ht_dropout_fwd(float *y, uint8_t *mask, const float *x, double p, uint64_t *state, int64_t numel);
void ht_dropout_bwd(float *dx, const float *dy, const uint8_t *mask, double p, int64_t numel, int accumulate);

void ht_adam_step(float *w, const float *g, float *exp_avg, float *exp_avg_sq, float *max_exp_avg_sq, int64_t numel, int64_t step, double lr, double beta1, double beta2, double eps, double weight_decay, int decoupled_weight_decay, int amsgrad, int maximize);

void ht_div(float *y, const float *a, const float *b, int64_t numel);
void ht_div_bwd_divisor(float *db, const float *dy, const float *y, const float *b, int64_t numel, int accumulate);
void ht_div_scalar(float *y, const float *x, float s, int64_t numel);
void ht_scalar_div(float *y, float s, const float *x, int64_t numel);
void ht_add_scalar(float *y, const float *x, float s, int64_t numel);
void ht_exp_fwd(float *y, const float *x, int64_t numel);
void ht_log_fwd(float *y, const float *x, int64_t numel);
void ht_clamp_min_fwd(float *y, const float *x, float lo, int64_t numel);
void ht_clamp_min_bwd(float *dx, const float *dy, const float *x, float lo, int64_t numel, int accumulate);
void ht_clamp_max_fwd(float *y, const float *x, float hi, int64_t numel);
void ht_clamp_max_bwd(float *dx, const float *dy, const float *x, float hi, int64_t numel, int accumulate);
void ht_i64_to_f32(float *y, const int64_t *x, int64_t numel);
void ht_sum_dim(float *y, const float *x, int64_t outer, int64_t n, int64_t inner);
void ht_mean_dim(float *y, const float *x, int64_t outer, int64_t n, int64_t inner);
void ht_expand_dim(float *y, const float *x, int64_t outer, int64_t n, int64_t inner);
void ht_mean_dim_bwd(float *dx, const float *dy, int64_t outer, int64_t n, int64_t inner, int accumulate);
void ht_narrow_fwd(float *y, const float *x, int64_t outer, int64_t n, int64_t start, int64_t length, int64_t inner);
void ht_narrow_i64(int64_t *y, const int64_t *x, int64_t outer, int64_t n, int64_t start, int64_t length, int64_t inner);
void ht_narrow_bwd(float *dx, const float *dy, int64_t outer, int64_t n, int64_t start, int64_t length, int64_t inner, int accumulate);
void ht_cat_fwd(float *y, const float *a, const float *b, int64_t outer, int64_t na, int64_t nb, int64_t inner);
void ht_cat_i64(int64_t *y, const int64_t *a, const int64_t *b, int64_t outer, int64_t na, int64_t nb, int64_t inner);
void ht_cat_bwd(float *dx, const float *dy, int64_t outer, int64_t na, int64_t nb, int64_t inner, int second, int accumulate);
void ht_transpose(float *y, const float *x, int64_t planes, int64_t rows, int64_t cols);
void ht_matmul_fwd(float *y, const float *a, const float *b, int64_t planes, int64_t m, int64_t k, int64_t n);
void ht_matmul_bwd_a(float *da, const float *dy, const float *b, int64_t planes, int64_t m, int64_t k, int64_t n);
void ht_matmul_bwd_b(float *db, const float *dy, const float *a, int64_t planes, int64_t m, int64_t k, int64_t n, int accumulate);
"""

def vector_isa(extra_flags=()):
    """The vector ISA (ht_vec.h's HT_VEC_ISA: "avx512", "avx2", "sse2", "neon", ...) the runtime
    compiles for with these extra flags."""
    cc = os.environ.get("CC", "cc")
    cmd = [cc, *FLAGS, *extra_flags, "-I", str(RUNTIME_DIR), "-E", "-P", "-x", "c", "-"]
    out = subprocess.run(cmd, input='#include "ht_vec.h"\nHT_VEC_ISA\n', capture_output=True,
                         text=True, check=True).stdout
    return out.split()[-1].strip('"')


def _kernel_builds():
    """The native build, and on x86-64 the narrower vector paths that users' CPUs take: AVX2
    (AVX-512 switched off) and SSE2 (baseline x86-64), each kept when it compiles to a vector
    ISA that the builds before it do not (on an AVX2 laptop the native build is the AVX2 one)."""
    candidates = {"native": ()}
    if platform.machine().lower() in ("x86_64", "amd64"):
        candidates.update(avx2=("-mno-avx512f",), sse2=("-march=x86-64",))
    builds, isas = {}, set()
    for name, flags in candidates.items():
        isa = vector_isa(flags)
        if isa not in isas:
            builds[name], isas = flags, isas | {isa}
    return builds


# Every kernel test runs against each of these builds of the runtime (name -> extra flags), so
# that the code a user's CPU takes is the tested code.
BUILDS = _kernel_builds()


def f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def ptr(ffi, a):
    """A C pointer into numpy array `a` (float32 or int64), or NULL for None."""
    if a is None:
        return ffi.NULL
    kind = {np.dtype(np.float32): "float[]", np.dtype(np.int64): "int64_t[]"}[a.dtype]
    assert a.flags.c_contiguous
    return ffi.from_buffer(kind, a)


def garbage(shape):
    """An output buffer that must be overwritten, not read."""
    return np.full(shape, np.nan, dtype=np.float32)


def grads(fn, *inputs, dy):
    """fn(*inputs) and the gradients of (fn(*inputs) * dy).sum() w.r.t. each input, via autograd."""
    ts = [torch.tensor(a, requires_grad=True) for a in inputs]
    out = fn(*ts)
    out.backward(torch.tensor(dy))
    return out.detach().numpy(), [t.grad.numpy() for t in ts]
