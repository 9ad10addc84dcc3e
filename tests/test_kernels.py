"""The C kernels of c_runtime/ (ht_kernels.h) against torch.autograd and torch.optim.SGD.

Every test runs against each of c_harness.BUILDS: the native build and, on x86-64, the AVX2 and
SSE2 vector paths that CPUs without AVX-512 (or without AVX) take.
"""
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from c_harness import BUILDS, KERNELS_CDEF, RUNTIME_DIR, f32, garbage, grads, load_runtime, ptr


# Tolerances against torch (float32 throughout).
ELEMENTWISE_RTOL, ELEMENTWISE_ATOL = 1e-5, 1e-6  # one or two roundings apart
TRANSCENDENTAL_RTOL, TRANSCENDENTAL_ATOL = 1e-5, 1e-6  # libm vs torch's vectorised exp/tanh
REDUCTION_RTOL, REDUCTION_ATOL = 1e-4, 1e-5  # sums in a different order
GEMM_RTOL, GEMM_ATOL = 1e-4, 1e-5  # dot products of up to 784 terms of size ~1/sqrt(in)
SGD_RTOL, SGD_ATOL = 1e-5, 1e-6  # a few steps of the same update rule

SEEDS = [0, 1, 2]

# (n, in, out): the MNIST MLP shapes at batch 1 and 64, then shapes that hit every tail of the
# tilings (n % 4 and % 8, out % 16 in pieces of 8/4/2/1, in not a multiple of 16).
LINEAR_SHAPES = [(1, 784, 50), (1, 50, 10), (64, 784, 50), (64, 50, 10), (1, 37, 5), (3, 37, 19),
                 (5, 16, 16), (7, 1, 1), (9, 100, 33), (2, 17, 3), (13, 49, 8), (6, 20, 15)]

SGD_CONFIGS = [
    dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
    dict(lr=0.05, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False),
    dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=1e-2, nesterov=False),
    dict(lr=0.05, momentum=0.9, dampening=0.0, weight_decay=1e-2, nesterov=True),
    dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=5e-3, nesterov=False),
]
SGD_STEPS = 4


@pytest.fixture(scope="module", params=list(BUILDS))
def rt(request):
    return load_runtime(KERNELS_CDEF, BUILDS[request.param])


def random_f32(rng, *shape, scale=1.0):
    return f32(rng.uniform(-scale, scale, size=shape))


def sgd_args(cfg, first_step):
    return (cfg["lr"], cfg["momentum"], cfg["dampening"], cfg["weight_decay"], int(cfg["nesterov"]),
            int(first_step))


def test_cdef_matches_header():
    def declarations(text):
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        text = text.replace("HT_EXPORT", "")
        return {" ".join(d.split()) for d in text.split(";") if d.strip()}

    header = declarations((RUNTIME_DIR / "ht_kernels.h").read_text())
    cdef = declarations(KERNELS_CDEF) - {"const char *ht_last_error(void)"}
    assert header == cdef


# ---- linear ----

def linear_case(seed, n, inp, out):
    rng = np.random.default_rng(seed)
    x = random_f32(rng, n, inp)
    W = random_f32(rng, out, inp, scale=1 / np.sqrt(inp))
    b = random_f32(rng, out)
    dy = random_f32(rng, n, out)
    return x, W, b, dy


def random_linear_shapes():
    rng = np.random.default_rng(1234)
    return [tuple(int(v) for v in (rng.integers(1, 70), rng.integers(1, 300), rng.integers(1, 70)))
            for _ in SEEDS]


@pytest.mark.parametrize("shape", LINEAR_SHAPES + random_linear_shapes())
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_fwd(rt, shape, with_bias):
    ffi, lib = rt
    n, inp, out = shape
    for seed in SEEDS:
        x, W, b, _ = linear_case(seed, n, inp, out)
        y = garbage((n, out))
        lib.ht_linear_fwd(ptr(ffi, y), ptr(ffi, x), ptr(ffi, W), ptr(ffi, b if with_bias else None), n, inp, out)
        expected = F.linear(torch.tensor(x), torch.tensor(W), torch.tensor(b) if with_bias else None)
        np.testing.assert_allclose(y, expected.numpy(), rtol=GEMM_RTOL, atol=GEMM_ATOL)


@pytest.mark.parametrize("shape", LINEAR_SHAPES + random_linear_shapes())
def test_linear_backward(rt, shape):
    ffi, lib = rt
    n, inp, out = shape
    for seed in SEEDS:
        x, W, b, dy = linear_case(seed, n, inp, out)
        _, (gx, gW, gb) = grads(F.linear, x, W, b, dy=dy)
        rng = np.random.default_rng(seed + 100)

        dx = garbage((n, inp))
        lib.ht_linear_bwd_input(ptr(ffi, dx), ptr(ffi, dy), ptr(ffi, W), n, inp, out, 0)
        np.testing.assert_allclose(dx, gx, rtol=GEMM_RTOL, atol=GEMM_ATOL)

        dx0 = random_f32(rng, n, inp)
        dx = dx0.copy()
        lib.ht_linear_bwd_input(ptr(ffi, dx), ptr(ffi, dy), ptr(ffi, W), n, inp, out, 1)
        np.testing.assert_allclose(dx, dx0 + gx, rtol=GEMM_RTOL, atol=GEMM_ATOL)

        dW0 = random_f32(rng, out, inp)
        dW = dW0.copy()
        lib.ht_linear_bwd_weight(ptr(ffi, dW), ptr(ffi, dy), ptr(ffi, x), n, inp, out)
        np.testing.assert_allclose(dW, dW0 + gW, rtol=GEMM_RTOL, atol=GEMM_ATOL)

        db0 = random_f32(rng, out)
        db = db0.copy()
        lib.ht_sum_rows(ptr(ffi, db), ptr(ffi, dy), n, out)
        np.testing.assert_allclose(db, db0 + gb, rtol=REDUCTION_RTOL, atol=REDUCTION_ATOL)


@pytest.mark.parametrize("shape", [(0, 5, 3), (2, 0, 3), (2, 5, 0), (0, 0, 0), (1, 0, 4)])
def test_linear_kernels_with_an_empty_dimension(rt, shape):
    """A sum of nothing is zero (or the bias); an empty output is left alone."""
    ffi, lib = rt
    n, inp, out = shape
    rng = np.random.default_rng(0)
    x, W, b, dy = (random_f32(rng, *s) for s in [(n, inp), (out, inp), (out,), (n, out)])
    y, dx = garbage((n, out)), garbage((n, inp))
    dW, db = np.ones((out, inp), np.float32), np.ones(out, np.float32)
    lib.ht_linear_fwd(ptr(ffi, y), ptr(ffi, x), ptr(ffi, W), ptr(ffi, b), n, inp, out)
    lib.ht_linear_bwd_input(ptr(ffi, dx), ptr(ffi, dy), ptr(ffi, W), n, inp, out, 0)
    lib.ht_linear_bwd_weight(ptr(ffi, dW), ptr(ffi, dy), ptr(ffi, x), n, inp, out)
    lib.ht_sum_rows(ptr(ffi, db), ptr(ffi, dy), n, out)
    np.testing.assert_array_equal(y, np.broadcast_to(b, (n, out)))
    np.testing.assert_array_equal(dx, np.zeros((n, inp)))
    np.testing.assert_array_equal(dW, 1 + dy.T @ x)
    np.testing.assert_allclose(db, 1 + dy.sum(axis=0), rtol=REDUCTION_RTOL, atol=REDUCTION_ATOL)
    W_after, y_next = W.copy(), garbage((n, out))
    for n_next in (0, n):  # a zero gradient when n == 0 or in == 0
        lib.ht_linear_bwd_weight_sgd_fwd(ptr(ffi, W_after), ffi.NULL, ptr(ffi, dy), ptr(ffi, x), n,
                                         inp, out, *sgd_args(SGD_CONFIGS[0], True),
                                         ptr(ffi, y_next), ptr(ffi, x), n_next, 1,
                                         ffi.NULL, ffi.NULL)
    np.testing.assert_array_equal(W_after, W)
    np.testing.assert_array_equal(y_next, np.zeros((n, out)))


# ---- SGD ----

@pytest.mark.parametrize("cfg", SGD_CONFIGS)
@pytest.mark.parametrize("numel", [1, 37, 50, 784 * 50])
def test_sgd_step_matches_torch(rt, cfg, numel):
    ffi, lib = rt
    rng = np.random.default_rng(numel)
    w = random_f32(rng, numel)
    param = torch.tensor(w.copy(), requires_grad=True)
    opt = torch.optim.SGD([param], **cfg)
    buf = garbage(numel) if cfg["momentum"] else None
    for step in range(SGD_STEPS):
        g = random_f32(rng, numel)
        param.grad = torch.tensor(g)
        opt.step()
        lib.ht_sgd_step(ptr(ffi, w), ptr(ffi, g), ptr(ffi, buf), numel, *sgd_args(cfg, step == 0))
        np.testing.assert_allclose(w, param.detach().numpy(), rtol=SGD_RTOL, atol=SGD_ATOL)
        if buf is not None:
            np.testing.assert_allclose(buf, opt.state[param]["momentum_buffer"].numpy(),
                                       rtol=SGD_RTOL, atol=SGD_ATOL)


@pytest.mark.parametrize("cfg", SGD_CONFIGS)
# Batch 1 is a rank-1 update: rows of whole vectors, rows that end in part of one (updated
# apart and stored whole over the row's end) and rows shorter than a vector (of 4 floats and
# more: every build's).
@pytest.mark.parametrize("shape", [(1, 784, 50), (1, 50, 10), (1, 37, 19), (1, 17, 4), (1, 7, 5),
                                   (1, 3, 6),
                                   (64, 784, 50), (64, 50, 10), (3, 37, 19), (9, 100, 33)])
def test_fused_sgd_equals_gradient_then_step(rt, cfg, shape):
    """ht_linear_bwd_weight_sgd == ht_linear_bwd_weight into zeros + ht_sgd_step, bit for bit
    (and likewise ht_bias_bwd_sgd == ht_sum_rows + ht_sgd_step)."""
    ffi, lib = rt
    n, inp, out = shape
    rng = np.random.default_rng(n * inp * out)
    momentum = bool(cfg["momentum"])
    W_fused, b_fused = random_f32(rng, out, inp), random_f32(rng, out)
    W_ref, b_ref = W_fused.copy(), b_fused.copy()
    bufW_fused, bufb_fused = (garbage((out, inp)), garbage(out)) if momentum else (None, None)
    bufW_ref, bufb_ref = (garbage((out, inp)), garbage(out)) if momentum else (None, None)
    for step in range(SGD_STEPS):
        x, dy = random_f32(rng, n, inp), random_f32(rng, n, out)
        args = sgd_args(cfg, step == 0)
        lib.ht_linear_bwd_weight_sgd(ptr(ffi, W_fused), ptr(ffi, bufW_fused), ptr(ffi, dy), ptr(ffi, x),
                                     n, inp, out, *args)
        lib.ht_bias_bwd_sgd(ptr(ffi, b_fused), ptr(ffi, bufb_fused), ptr(ffi, dy), n, out, *args)

        gW, gb = np.zeros((out, inp), np.float32), np.zeros(out, np.float32)
        lib.ht_linear_bwd_weight(ptr(ffi, gW), ptr(ffi, dy), ptr(ffi, x), n, inp, out)
        lib.ht_sum_rows(ptr(ffi, gb), ptr(ffi, dy), n, out)
        lib.ht_sgd_step(ptr(ffi, W_ref), ptr(ffi, gW), ptr(ffi, bufW_ref), out * inp, *args)
        lib.ht_sgd_step(ptr(ffi, b_ref), ptr(ffi, gb), ptr(ffi, bufb_ref), out, *args)

        np.testing.assert_array_equal(W_fused, W_ref)
        np.testing.assert_array_equal(b_fused, b_ref)
        if momentum:
            np.testing.assert_array_equal(bufW_fused, bufW_ref)
            np.testing.assert_array_equal(bufb_fused, bufb_ref)


@pytest.mark.parametrize("cfg", SGD_CONFIGS)
@pytest.mark.parametrize("shape", [(1, 784, 50), (1, 50, 10), (1, 37, 19), (1, 16, 3), (64, 784, 50),
                                   (3, 37, 19)])
@pytest.mark.parametrize("n_next", [0, 1, 5])
def test_fused_sgd_then_next_forward_equals_the_two_kernels(rt, cfg, shape, n_next):
    """ht_linear_bwd_weight_sgd_fwd == ht_linear_bwd_weight_sgd + ht_linear_fwd, bit for bit
    (one pass over W when both batches have one row)."""
    ffi, lib = rt
    n, inp, out = shape
    rng = np.random.default_rng(n * inp * out + n_next)
    momentum = bool(cfg["momentum"])
    W_fused = random_f32(rng, out, inp)
    W_ref = W_fused.copy()
    buf_fused = garbage((out, inp)) if momentum else None
    buf_ref = buf_fused.copy() if momentum else None
    for step in range(SGD_STEPS):
        x, dy, x_next = random_f32(rng, n, inp), random_f32(rng, n, out), random_f32(rng, max(n_next, 1), inp)
        y_fused, y_ref = garbage((max(n_next, 1), out)), garbage((max(n_next, 1), out))
        args = sgd_args(cfg, step == 0)
        lib.ht_linear_bwd_weight_sgd_fwd(ptr(ffi, W_fused), ptr(ffi, buf_fused), ptr(ffi, dy), ptr(ffi, x),
                                         n, inp, out, *args, ptr(ffi, y_fused), ptr(ffi, x_next), n_next, 1,
                                         ffi.NULL, ffi.NULL)
        lib.ht_linear_bwd_weight_sgd(ptr(ffi, W_ref), ptr(ffi, buf_ref), ptr(ffi, dy), ptr(ffi, x),
                                     n, inp, out, *args)
        if n_next:
            lib.ht_linear_fwd(ptr(ffi, y_ref), ptr(ffi, x_next), ptr(ffi, W_ref), ffi.NULL, n_next, inp, out)
            np.testing.assert_array_equal(y_fused, y_ref)
        np.testing.assert_array_equal(W_fused, W_ref)
        if momentum:
            np.testing.assert_array_equal(buf_fused, buf_ref)


@pytest.mark.parametrize("cfg", SGD_CONFIGS)
@pytest.mark.parametrize("shape", [(1, 784, 50), (1, 50, 10), (1, 37, 19), (64, 50, 10), (5, 37, 19)])
def test_fused_sgd_trains_like_torch(rt, cfg, shape):
    """A linear layer trained a few steps with the fused kernels and with torch.optim.SGD."""
    ffi, lib = rt
    n, inp, out = shape
    rng = np.random.default_rng(7)
    layer = torch.nn.Linear(inp, out)
    W = f32(layer.weight.detach().numpy())
    b = f32(layer.bias.detach().numpy())
    opt = torch.optim.SGD(layer.parameters(), **cfg)
    bufW, bufb = (garbage((out, inp)), garbage(out)) if cfg["momentum"] else (None, None)
    for step in range(SGD_STEPS):
        x, dy = random_f32(rng, n, inp), random_f32(rng, n, out)
        opt.zero_grad()
        layer(torch.tensor(x)).backward(torch.tensor(dy))
        opt.step()
        args = sgd_args(cfg, step == 0)
        lib.ht_linear_bwd_weight_sgd(ptr(ffi, W), ptr(ffi, bufW), ptr(ffi, dy), ptr(ffi, x), n, inp, out, *args)
        lib.ht_bias_bwd_sgd(ptr(ffi, b), ptr(ffi, bufb), ptr(ffi, dy), n, out, *args)
        np.testing.assert_allclose(W, layer.weight.detach().numpy(), rtol=GEMM_RTOL, atol=GEMM_ATOL)
        np.testing.assert_allclose(b, layer.bias.detach().numpy(), rtol=GEMM_RTOL, atol=GEMM_ATOL)


# ---- activations ----

ACTIVATIONS = {
    "relu": (torch.relu, "ht_relu_fwd", "ht_relu_bwd", ELEMENTWISE_RTOL, ELEMENTWISE_ATOL),
    "sigmoid": (torch.sigmoid, "ht_sigmoid_fwd", "ht_sigmoid_bwd", TRANSCENDENTAL_RTOL, TRANSCENDENTAL_ATOL),
    "tanh": (torch.tanh, "ht_tanh_fwd", "ht_tanh_bwd", TRANSCENDENTAL_RTOL, TRANSCENDENTAL_ATOL),
}
ELEMENTWISE_SIZES = [1, 15, 16, 37, 50, 3200]


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("numel", ELEMENTWISE_SIZES)
def test_activation(rt, name, numel):
    ffi, lib = rt
    torch_fn, fwd, bwd, rtol, atol = ACTIVATIONS[name]
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        x = random_f32(rng, numel, scale=4.0)
        x[::7] = 0.0  # relu's kink: torch's gradient there is 0
        dy = random_f32(rng, numel)
        expected_y, (expected_dx,) = grads(torch_fn, x, dy=dy)

        y = garbage(numel)
        getattr(lib, fwd)(ptr(ffi, y), ptr(ffi, x), numel)
        np.testing.assert_allclose(y, expected_y, rtol=rtol, atol=atol)

        dx = garbage(numel)
        getattr(lib, bwd)(ptr(ffi, dx), ptr(ffi, dy), ptr(ffi, y), numel, 0)
        np.testing.assert_allclose(dx, expected_dx, rtol=rtol, atol=atol)

        dx0 = random_f32(rng, numel)
        dx = dx0.copy()
        getattr(lib, bwd)(ptr(ffi, dx), ptr(ffi, dy), ptr(ffi, y), numel, 1)
        np.testing.assert_allclose(dx, dx0 + expected_dx, rtol=rtol, atol=atol)


def test_activations_saturate(rt):
    ffi, lib = rt
    x = f32([-200.0, -90.0, -20.0, 0.0, 20.0, 90.0, 200.0])
    for fwd, torch_fn in [("ht_sigmoid_fwd", torch.sigmoid), ("ht_tanh_fwd", torch.tanh)]:
        y = garbage(x.size)
        getattr(lib, fwd)(ptr(ffi, y), ptr(ffi, x), x.size)
        np.testing.assert_allclose(y, torch_fn(torch.tensor(x)).numpy(), rtol=ELEMENTWISE_RTOL, atol=1e-30)


def test_activation_in_place(rt):
    ffi, lib = rt
    x = random_f32(np.random.default_rng(0), 37)
    y = x.copy()
    lib.ht_relu_fwd(ptr(ffi, y), ptr(ffi, y), y.size)
    np.testing.assert_array_equal(y, np.maximum(x, 0))


# ---- elementwise arithmetic ----

@pytest.mark.parametrize("numel", ELEMENTWISE_SIZES)
def test_binary_ops_and_their_gradients(rt, numel):
    ffi, lib = rt
    tol = dict(rtol=ELEMENTWISE_RTOL, atol=ELEMENTWISE_ATOL)
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        a, b, dy = random_f32(rng, numel), random_f32(rng, numel), random_f32(rng, numel)
        for kernel, torch_fn in [("ht_add", torch.add), ("ht_sub", torch.sub), ("ht_mul", torch.mul)]:
            expected_y, (ga, gb) = grads(torch_fn, a, b, dy=dy)
            y = garbage(numel)
            getattr(lib, kernel)(ptr(ffi, y), ptr(ffi, a), ptr(ffi, b), numel)
            np.testing.assert_allclose(y, expected_y, **tol)
            if kernel == "ht_mul":
                da, db = garbage(numel), garbage(numel)
                lib.ht_mul_bwd(ptr(ffi, da), ptr(ffi, db), ptr(ffi, dy), ptr(ffi, a), ptr(ffi, b), numel, 0)
            else:  # the gradients are +-dy: ht_axpy into zeros
                da, db = np.zeros(numel, np.float32), np.zeros(numel, np.float32)
                lib.ht_axpy(ptr(ffi, da), 1.0, ptr(ffi, dy), numel)
                lib.ht_axpy(ptr(ffi, db), 1.0 if kernel == "ht_add" else -1.0, ptr(ffi, dy), numel)
            np.testing.assert_allclose(da, ga, **tol)
            np.testing.assert_allclose(db, gb, **tol)

        _, (ga, gb) = grads(torch.mul, a, b, dy=dy)
        da0, db0 = random_f32(rng, numel), random_f32(rng, numel)
        da, db = da0.copy(), db0.copy()
        lib.ht_mul_bwd(ptr(ffi, da), ptr(ffi, db), ptr(ffi, dy), ptr(ffi, a), ptr(ffi, b), numel, 1)
        np.testing.assert_allclose(da, da0 + ga, **tol)
        np.testing.assert_allclose(db, db0 + gb, **tol)
        db = garbage(numel)
        lib.ht_mul_bwd(ffi.NULL, ptr(ffi, db), ptr(ffi, dy), ptr(ffi, a), ptr(ffi, b), numel, 0)
        np.testing.assert_allclose(db, gb, **tol)


@pytest.mark.parametrize("numel", ELEMENTWISE_SIZES)
def test_scale_axpy_fill_copy(rt, numel):
    ffi, lib = rt
    tol = dict(rtol=ELEMENTWISE_RTOL, atol=ELEMENTWISE_ATOL)
    rng = np.random.default_rng(numel)
    x, dy, y0 = random_f32(rng, numel), random_f32(rng, numel), random_f32(rng, numel)
    s = np.float32(-1.75)

    expected_y, (gx,) = grads(lambda t: t * float(s), x, dy=dy)
    y = garbage(numel)
    lib.ht_scale(ptr(ffi, y), ptr(ffi, x), s, numel)
    np.testing.assert_allclose(y, expected_y, **tol)
    dx = garbage(numel)
    lib.ht_scale(ptr(ffi, dx), ptr(ffi, dy), s, numel)  # scale's gradient is a scale
    np.testing.assert_allclose(dx, gx, **tol)

    y = y0.copy()
    lib.ht_axpy(ptr(ffi, y), s, ptr(ffi, x), numel)
    np.testing.assert_allclose(y, (torch.tensor(y0) + float(s) * torch.tensor(x)).numpy(), **tol)

    y = garbage(numel)
    lib.ht_fill(ptr(ffi, y), 0.25, numel)
    np.testing.assert_array_equal(y, np.full(numel, 0.25, np.float32))

    y = garbage(numel)
    lib.ht_copy(ptr(ffi, y), ptr(ffi, x), numel)
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("rows,cols", [(1, 1), (1, 50), (64, 10), (7, 37)])
def test_add_rowvec_and_its_gradient(rt, rows, cols):
    ffi, lib = rt
    rng = np.random.default_rng(rows * cols)
    x, v, dy = random_f32(rng, rows, cols), random_f32(rng, cols), random_f32(rng, rows, cols)
    expected_y, (gx, gv) = grads(torch.add, x, v, dy=dy)
    y = garbage((rows, cols))
    lib.ht_add_rowvec(ptr(ffi, y), ptr(ffi, x), ptr(ffi, v), rows, cols)
    np.testing.assert_allclose(y, expected_y, rtol=ELEMENTWISE_RTOL, atol=ELEMENTWISE_ATOL)
    dx = garbage((rows, cols))
    lib.ht_copy(ptr(ffi, dx), ptr(ffi, dy), rows * cols)
    np.testing.assert_array_equal(dx, gx)
    dv = np.zeros(cols, np.float32)
    lib.ht_sum_rows(ptr(ffi, dv), ptr(ffi, dy), rows, cols)
    np.testing.assert_allclose(dv, gv, rtol=REDUCTION_RTOL, atol=REDUCTION_ATOL)


# ---- softmax family ----

SOFTMAX_SHAPES = [(1, 1), (1, 10), (64, 10), (5, 37), (3, 100)]


@pytest.mark.parametrize("name", ["log_softmax", "softmax"])
@pytest.mark.parametrize("rows,cols", SOFTMAX_SHAPES)
@pytest.mark.parametrize("offset", [0.0, 1000.0])  # large logits: must subtract the row max
def test_softmax_family(rt, name, rows, cols, offset):
    ffi, lib = rt
    torch_fn = {"log_softmax": F.log_softmax, "softmax": F.softmax}[name]
    fwd, bwd = getattr(lib, f"ht_{name}_fwd"), getattr(lib, f"ht_{name}_bwd")
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        x = random_f32(rng, rows, cols, scale=5.0) + np.float32(offset)
        dy = random_f32(rng, rows, cols)
        expected_y, (gx,) = grads(lambda t: torch_fn(t, dim=1), x, dy=dy)

        y = garbage((rows, cols))
        fwd(ptr(ffi, y), ptr(ffi, x), rows, cols)
        np.testing.assert_allclose(y, expected_y, rtol=REDUCTION_RTOL, atol=REDUCTION_ATOL)

        dx = garbage((rows, cols))
        bwd(ptr(ffi, dx), ptr(ffi, dy), ptr(ffi, y), rows, cols, 0)
        np.testing.assert_allclose(dx, gx, rtol=REDUCTION_RTOL, atol=REDUCTION_ATOL)

        dx0 = random_f32(rng, rows, cols)
        dx = dx0.copy()
        bwd(ptr(ffi, dx), ptr(ffi, dy), ptr(ffi, y), rows, cols, 1)
        np.testing.assert_allclose(dx, dx0 + gx, rtol=REDUCTION_RTOL, atol=REDUCTION_ATOL)


# ---- losses and reductions ----

@pytest.mark.parametrize("rows,cols", [(1, 10), (64, 10), (7, 3)])
@pytest.mark.parametrize("mean", [1, 0])
def test_nll_loss(rt, rows, cols, mean):
    ffi, lib = rt
    reduction = "mean" if mean else "sum"
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        logp = f32(F.log_softmax(torch.tensor(random_f32(rng, rows, cols, scale=3.0)), dim=1).numpy())
        target = rng.integers(0, cols, size=rows).astype(np.int64)
        dloss = np.float32(rng.uniform(0.5, 2.0))
        expected, (g,) = grads(lambda t: F.nll_loss(t, torch.tensor(target), reduction=reduction), logp,
                               dy=np.array(dloss))

        loss = garbage(1)
        assert lib.ht_nll_loss_fwd(ptr(ffi, loss), ptr(ffi, logp), ptr(ffi, target), rows, cols, mean) == 0
        np.testing.assert_allclose(loss[0], expected, rtol=REDUCTION_RTOL, atol=REDUCTION_ATOL)

        d = garbage((rows, cols))
        lib.ht_nll_loss_bwd(ptr(ffi, d), dloss, ptr(ffi, target), rows, cols, mean, 0)
        np.testing.assert_allclose(d, g, rtol=ELEMENTWISE_RTOL, atol=ELEMENTWISE_ATOL)

        d0 = random_f32(rng, rows, cols)
        d = d0.copy()
        lib.ht_nll_loss_bwd(ptr(ffi, d), dloss, ptr(ffi, target), rows, cols, mean, 1)
        np.testing.assert_allclose(d, d0 + g, rtol=ELEMENTWISE_RTOL, atol=ELEMENTWISE_ATOL)


@pytest.mark.parametrize("bad,row", [(12, 3), (-1, 0), (10, 4)])
def test_nll_loss_rejects_out_of_range_target(rt, bad, row):
    ffi, lib = rt
    logp = np.zeros((5, 10), np.float32)
    target = np.arange(5, dtype=np.int64)
    target[row] = bad
    loss = np.full(1, 7.0, np.float32)
    assert lib.ht_nll_loss_fwd(ptr(ffi, loss), ptr(ffi, logp), ptr(ffi, target), 5, 10, 1) == 1  # HT_ERROR
    assert ffi.string(lib.ht_last_error()).decode() == \
        f"nll_loss: target {bad} is out of range [0, 10) at row {row}"
    assert loss[0] == 7.0


@pytest.mark.parametrize("numel", [1, 37, 3200])
def test_mse_loss(rt, numel):
    ffi, lib = rt
    rng = np.random.default_rng(numel)
    x, target = random_f32(rng, numel), random_f32(rng, numel)
    dloss = np.float32(1.5)
    expected, (gx,) = grads(lambda t: F.mse_loss(t, torch.tensor(target)), x, dy=np.array(dloss))
    loss = garbage(1)
    lib.ht_mse_loss_fwd(ptr(ffi, loss), ptr(ffi, x), ptr(ffi, target), numel)
    np.testing.assert_allclose(loss[0], expected, rtol=REDUCTION_RTOL, atol=REDUCTION_ATOL)
    dx = garbage(numel)
    lib.ht_mse_loss_bwd(ptr(ffi, dx), dloss, ptr(ffi, x), ptr(ffi, target), numel, 0)
    np.testing.assert_allclose(dx, gx, rtol=ELEMENTWISE_RTOL, atol=ELEMENTWISE_ATOL)
    dx0 = random_f32(rng, numel)
    dx = dx0.copy()
    lib.ht_mse_loss_bwd(ptr(ffi, dx), dloss, ptr(ffi, x), ptr(ffi, target), numel, 1)
    np.testing.assert_allclose(dx, dx0 + gx, rtol=ELEMENTWISE_RTOL, atol=ELEMENTWISE_ATOL)


@pytest.mark.parametrize("numel", [1, 37, 60000])
def test_sum_and_mean_all(rt, numel):
    ffi, lib = rt
    rng = np.random.default_rng(numel)
    x = random_f32(rng, numel)
    dout = np.float32(0.75)
    for kernel, torch_fn in [("sum_all", torch.sum), ("mean_all", torch.mean)]:
        expected, (gx,) = grads(torch_fn, x, dy=np.array(dout))
        out = garbage(1)
        getattr(lib, f"ht_{kernel}")(ptr(ffi, out), ptr(ffi, x), numel)
        np.testing.assert_allclose(out[0], expected, rtol=REDUCTION_RTOL, atol=REDUCTION_ATOL)
        dx = garbage(numel)
        getattr(lib, f"ht_{kernel}_bwd")(ptr(ffi, dx), dout, numel, 0)
        np.testing.assert_allclose(dx, gx, rtol=ELEMENTWISE_RTOL, atol=ELEMENTWISE_ATOL)
        dx0 = random_f32(rng, numel)
        dx = dx0.copy()
        getattr(lib, f"ht_{kernel}_bwd")(ptr(ffi, dx), dout, numel, 1)
        np.testing.assert_allclose(dx, dx0 + gx, rtol=ELEMENTWISE_RTOL, atol=ELEMENTWISE_ATOL)


# ---- accuracy ----

def test_argmax_rows_and_count_equal(rt):
    ffi, lib = rt
    rng = np.random.default_rng(0)
    x = f32(rng.integers(-3, 4, size=(64, 10)))  # small integers: many ties, first max wins
    x[5, 7] = np.nan
    x[6, [2, 8]] = np.nan  # torch: a NaN is the maximum, the first one wins
    idx = np.full(64, -1, np.int64)
    lib.ht_argmax_rows(ptr(ffi, idx), ptr(ffi, x), 64, 10)
    expected = torch.argmax(torch.tensor(x), dim=1).numpy()
    np.testing.assert_array_equal(idx, expected)

    one_col = np.full(1, -1, np.int64)
    lib.ht_argmax_rows(ptr(ffi, one_col), ptr(ffi, f32([[3.0]])), 1, 1)
    assert one_col[0] == 0

    labels = expected.copy()
    labels[::3] = (labels[::3] + 1) % 10
    assert lib.ht_count_equal(ptr(ffi, idx), ptr(ffi, labels), 64) == int((idx == labels).sum())
    assert lib.ht_count_equal(ptr(ffi, idx), ptr(ffi, idx), 64) == 64
