"""NaN and infinities through the C kernels and a compiled model, as in PyTorch.

Every kernel of ht_kernels.h gets inputs holding nan, +inf and -inf at drawn positions and is
compared, forward and backward, with torch.autograd (NaN equal to NaN, infinities exact). A
comparison written the wrong way round (`x > 0 ? x : 0`) turns a NaN into a number; these tests
catch that in the scalar loops, the vectorised ones and the AVX-512 tails alike. Last, the MNIST
MLP with one NaN weight: eager PyTorch and the compiled loop both end with a NaN loss and the
same NaN pattern in every parameter.
"""
import math
import os
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from c_harness import BUILDS, KERNELS_CDEF, f32, garbage, grads, load_runtime, ptr
from hytorch.build import build_flags

NAN, INF = float("nan"), float("inf")
# Loose enough for sums in another order; the point is where NaN and infinities come out.
TOL = dict(rtol=1e-4, atol=1e-5)

SPECIALS = st.sampled_from([NAN, INF, -INF])
FINITE = st.floats(-4, 4, width=32)
SCALARS = st.one_of(SPECIALS, FINITE)
SIZES = st.integers(1, 40)  # AVX-512 blocks of 16 and their tails

KERNEL_SETTINGS = settings(max_examples=60, deadline=None,
                           suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SGD_CONFIGS = [
    dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
    dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=1e-2, nesterov=False),
    dict(lr=0.05, momentum=0.9, dampening=0.0, weight_decay=1e-2, nesterov=True),
]


@pytest.fixture(scope="module", params=list(BUILDS))
def rt(request):
    return load_runtime(KERNELS_CDEF, BUILDS[request.param])


@st.composite
def with_specials(draw, shape, max_specials=3):
    """A float32 array of `shape`: finite values with up to `max_specials` nan/inf/-inf."""
    a = draw(arrays(np.float32, shape, elements=FINITE))
    flat = a.reshape(-1)
    positions = st.integers(0, flat.size - 1)
    for position, value in draw(st.lists(st.tuples(positions, SPECIALS), max_size=max_specials)):
        flat[position] = value
    return a


@st.composite
def same_shape(draw, count, max_rank=1):
    """`count` arrays with specials, of one drawn shape (a vector, or a matrix when max_rank 2)."""
    shape = tuple(draw(SIZES) for _ in range(draw(st.integers(1, max_rank))))
    return tuple(draw(with_specials(shape)) for _ in range(count))


def assert_close(actual, expected):
    torch.testing.assert_close(torch.as_tensor(np.asarray(actual)), torch.as_tensor(np.asarray(expected)),
                               equal_nan=True, **TOL)


def accumulated(kernel_call, expected, shape, seed=0):
    """kernel_call(dx, accumulate=1) adds to a finite dx: checks dx == dx0 + expected."""
    dx0 = f32(np.random.default_rng(seed).uniform(-1, 1, shape))
    dx = dx0.copy()
    kernel_call(dx, 1)
    assert_close(dx, dx0 + expected)


def test_models_are_compiled_with_ieee_nan_and_infinities():
    """No -ffast-math, -Ofast or -ffinite-math-only: they let the compiler assume NaN and
    infinities away."""
    macros = subprocess.run([os.environ.get("CC", "cc"), *build_flags(), "-dM", "-E", "-x", "c", "-"],
                            input="", capture_output=True, text=True, check=True).stdout.splitlines()
    assert "#define __FINITE_MATH_ONLY__ 0" in macros
    assert not any(m.startswith("#define __FAST_MATH__") for m in macros)


# ---- activations ----

ACTIVATIONS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}
EVERY_KIND = f32([NAN, INF, -INF, -0.0, 0.0, 1.0, -1.0])


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@KERNEL_SETTINGS
@given(case=same_shape(2))
@example(case=(EVERY_KIND, f32([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])))
@example(case=(EVERY_KIND, f32([NAN, INF, -INF, NAN, INF, -INF, NAN])))
def test_activation(rt, name, case):
    ffi, lib = rt
    x, dy = case
    expected_y, (gx,) = grads(ACTIVATIONS[name], x, dy=dy)
    y = garbage(x.shape)
    getattr(lib, f"ht_{name}_fwd")(ptr(ffi, y), ptr(ffi, x), x.size)
    assert_close(y, expected_y)
    np.testing.assert_array_equal(np.signbit(y[y == 0]), np.signbit(expected_y[expected_y == 0]))

    bwd = getattr(lib, f"ht_{name}_bwd")
    dx = garbage(x.shape)
    bwd(ptr(ffi, dx), ptr(ffi, dy), ptr(ffi, y), x.size, 0)
    assert_close(dx, gx)
    accumulated(lambda d, acc: bwd(ptr(ffi, d), ptr(ffi, dy), ptr(ffi, y), x.size, acc), gx, x.shape)


# ---- elementwise arithmetic ----

@KERNEL_SETTINGS
@given(case=same_shape(3))
def test_binary_ops_and_their_gradients(rt, case):
    ffi, lib = rt
    a, b, dy = case
    n = a.size
    for kernel, torch_fn in [("ht_add", torch.add), ("ht_sub", torch.sub), ("ht_mul", torch.mul)]:
        expected_y, (ga, gb) = grads(torch_fn, a, b, dy=dy)
        y = garbage(a.shape)
        getattr(lib, kernel)(ptr(ffi, y), ptr(ffi, a), ptr(ffi, b), n)
        assert_close(y, expected_y)
    da, db = garbage(a.shape), garbage(a.shape)
    lib.ht_mul_bwd(ptr(ffi, da), ptr(ffi, db), ptr(ffi, dy), ptr(ffi, a), ptr(ffi, b), n, 0)
    assert_close(da, ga)
    assert_close(db, gb)
    # add and sub differentiate through ht_axpy: dy and -dy added to the gradient
    for sign in (1.0, -1.0):
        accumulated(lambda d, _: lib.ht_axpy(ptr(ffi, d), sign, ptr(ffi, dy), n), sign * dy, a.shape)


@KERNEL_SETTINGS
@given(case=same_shape(2), s=SCALARS)
def test_scale_and_axpy(rt, case, s):
    ffi, lib = rt
    x, dy = case
    expected_y, (gx,) = grads(lambda t: t * s, x, dy=dy)
    y = garbage(x.shape)
    lib.ht_scale(ptr(ffi, y), ptr(ffi, x), s, x.size)
    assert_close(y, expected_y)
    dx = garbage(x.shape)
    lib.ht_scale(ptr(ffi, dx), ptr(ffi, dy), s, x.size)
    assert_close(dx, gx)
    accumulated(lambda d, _: lib.ht_axpy(ptr(ffi, d), s, ptr(ffi, x), x.size),
                (torch.tensor(x) * s).numpy(), x.shape)


@KERNEL_SETTINGS
@given(rows=SIZES, data=st.data())
def test_add_rowvec_and_its_gradient(rt, rows, data):
    ffi, lib = rt
    cols = data.draw(SIZES)
    x, dy = data.draw(with_specials((rows, cols))), data.draw(with_specials((rows, cols)))
    v = data.draw(with_specials((cols,)))
    expected_y, (_, gv) = grads(torch.add, x, v, dy=dy)
    y = garbage((rows, cols))
    lib.ht_add_rowvec(ptr(ffi, y), ptr(ffi, x), ptr(ffi, v), rows, cols)
    assert_close(y, expected_y)
    dv = np.zeros(cols, np.float32)
    lib.ht_sum_rows(ptr(ffi, dv), ptr(ffi, dy), rows, cols)
    assert_close(dv, gv)


# ---- linear layers and SGD ----

@st.composite
def linear_cases(draw):
    """(x[n,in], W[out,in], b[out], dy[n,out]) with specials, shapes hitting every tile and tail."""
    n, inp, out = draw(st.integers(1, 9)), draw(SIZES), draw(st.integers(1, 20))
    return (draw(with_specials((n, inp))), draw(with_specials((out, inp))), draw(with_specials((out,))),
            draw(with_specials((n, out))))


@KERNEL_SETTINGS
@given(case=linear_cases())
def test_linear_forward_and_backward(rt, case):
    ffi, lib = rt
    x, W, b, dy = case
    (n, inp), out = x.shape, W.shape[0]
    expected_y, (gx, gW, gb) = grads(F.linear, x, W, b, dy=dy)
    y = garbage((n, out))
    lib.ht_linear_fwd(ptr(ffi, y), ptr(ffi, x), ptr(ffi, W), ptr(ffi, b), n, inp, out)
    assert_close(y, expected_y)
    dx = garbage((n, inp))
    lib.ht_linear_bwd_input(ptr(ffi, dx), ptr(ffi, dy), ptr(ffi, W), n, inp, out, 0)
    assert_close(dx, gx)
    dW, db = np.zeros((out, inp), np.float32), np.zeros(out, np.float32)
    lib.ht_linear_bwd_weight(ptr(ffi, dW), ptr(ffi, dy), ptr(ffi, x), n, inp, out)
    lib.ht_sum_rows(ptr(ffi, db), ptr(ffi, dy), n, out)
    assert_close(dW, gW)
    assert_close(db, gb)


def sgd_args(cfg, first_step):
    return (cfg["lr"], cfg["momentum"], cfg["dampening"], cfg["weight_decay"], int(cfg["nesterov"]),
            int(first_step))


@pytest.mark.parametrize("cfg", SGD_CONFIGS)
@KERNEL_SETTINGS
@given(case=same_shape(3))
def test_sgd_step_matches_torch(rt, cfg, case):
    """Two steps from a weight and gradients that may hold NaN or infinities."""
    ffi, lib = rt
    w, *steps = case
    param = torch.tensor(w.copy(), requires_grad=True)
    opt = torch.optim.SGD([param], **cfg)
    w, buf = w.copy(), garbage(w.shape) if cfg["momentum"] else None
    for step, g in enumerate(steps):
        param.grad = torch.tensor(g)
        opt.step()
        lib.ht_sgd_step(ptr(ffi, w), ptr(ffi, g), ptr(ffi, buf), w.size, *sgd_args(cfg, step == 0))
        assert_close(w, param.detach().numpy())
        if buf is not None:
            assert_close(buf, opt.state[param]["momentum_buffer"].numpy())


@pytest.mark.parametrize("cfg", SGD_CONFIGS)
@KERNEL_SETTINGS
@given(case=linear_cases(), n_next=st.integers(0, 3))
def test_fused_sgd_equals_gradient_then_step(rt, cfg, case, n_next):
    """The fused backward+SGD kernels (and the next forward) give the unfused kernels' bits,
    NaN where they have NaN."""
    ffi, lib = rt
    x, W, b, dy = case
    (n, inp), out = x.shape, W.shape[0]
    x_next = np.resize(x, (max(n_next, 1), inp))
    momentum = bool(cfg["momentum"])
    fused, ref = [W.copy(), b.copy()], [W.copy(), b.copy()]
    fused_buf = [garbage(W.shape), garbage(b.shape)] if momentum else [None, None]
    ref_buf = [garbage(W.shape), garbage(b.shape)] if momentum else [None, None]
    y_fused, y_ref = garbage((max(n_next, 1), out)), garbage((max(n_next, 1), out))
    args = sgd_args(cfg, True)

    lib.ht_linear_bwd_weight_sgd_fwd(ptr(ffi, fused[0]), ptr(ffi, fused_buf[0]), ptr(ffi, dy), ptr(ffi, x),
                                     n, inp, out, *args, ptr(ffi, y_fused), ptr(ffi, x_next), n_next, 1,
                                     ffi.NULL, ffi.NULL)
    lib.ht_bias_bwd_sgd(ptr(ffi, fused[1]), ptr(ffi, fused_buf[1]), ptr(ffi, dy), n, out, *args)

    gW, gb = np.zeros((out, inp), np.float32), np.zeros(out, np.float32)
    lib.ht_linear_bwd_weight(ptr(ffi, gW), ptr(ffi, dy), ptr(ffi, x), n, inp, out)
    lib.ht_sum_rows(ptr(ffi, gb), ptr(ffi, dy), n, out)
    lib.ht_sgd_step(ptr(ffi, ref[0]), ptr(ffi, gW), ptr(ffi, ref_buf[0]), out * inp, *args)
    lib.ht_sgd_step(ptr(ffi, ref[1]), ptr(ffi, gb), ptr(ffi, ref_buf[1]), out, *args)
    if n_next:
        lib.ht_linear_fwd(ptr(ffi, y_ref), ptr(ffi, x_next), ptr(ffi, ref[0]), ffi.NULL, n_next, inp, out)
        np.testing.assert_array_equal(y_fused, y_ref)
    for got, want in zip(fused + fused_buf, ref + ref_buf):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("inp", [5, 16, 37])
def test_pipelined_step_keeps_an_infinite_forward_infinite(rt, inp):
    """An infinite gradient row makes that row of W infinite, and W x_next +inf when x_next's
    terms all agree in sign (torch's answer too): the lanes past the end of a row must not
    add NaN to the sum."""
    ffi, lib = rt
    out = 3
    x = f32(np.linspace(0.5, 1.5, inp).reshape(1, inp))
    W = f32(np.full((out, inp), 0.1))
    dy = f32([[-INF, 1.0, 0.0]])
    y = garbage((1, out))
    lib.ht_linear_bwd_weight_sgd_fwd(ptr(ffi, W), ffi.NULL, ptr(ffi, dy), ptr(ffi, x), 1, inp, out,
                                     *sgd_args(SGD_CONFIGS[0], True), ptr(ffi, y), ptr(ffi, x), 1, 1,
                                     ffi.NULL, ffi.NULL)
    W_torch = torch.full((out, inp), 0.1) - 0.1 * (torch.tensor(dy).T @ torch.tensor(x))
    assert_close(y, F.linear(torch.tensor(x), W_torch).numpy())
    assert y[0, 0] == INF


# ---- softmax family ----

@pytest.mark.parametrize("name", ["log_softmax", "softmax"])
@KERNEL_SETTINGS
@given(case=same_shape(2, max_rank=2))
@example(case=(f32([[1.0, NAN, 2.0], [1.0, INF, 2.0], [-INF, -INF, -INF], [1.0, -INF, 2.0], [NAN, 0.0, INF]]),
               f32(np.ones((5, 3)))))
def test_softmax_family(rt, name, case):
    ffi, lib = rt
    x, dy = (a.reshape(a.shape[0], -1) for a in case)
    rows, cols = x.shape
    torch_fn = {"log_softmax": F.log_softmax, "softmax": F.softmax}[name]
    expected_y, (gx,) = grads(lambda t: torch_fn(t, dim=1), x, dy=dy)
    y = garbage(x.shape)
    getattr(lib, f"ht_{name}_fwd")(ptr(ffi, y), ptr(ffi, x), rows, cols)
    assert_close(y, expected_y)
    bwd = getattr(lib, f"ht_{name}_bwd")
    dx = garbage(x.shape)
    bwd(ptr(ffi, dx), ptr(ffi, dy), ptr(ffi, y), rows, cols, 0)
    assert_close(dx, gx)
    accumulated(lambda d, acc: bwd(ptr(ffi, d), ptr(ffi, dy), ptr(ffi, y), rows, cols, acc), gx, x.shape)


@st.composite
def log_softmax_cases(draw):
    """(x, dy, y, dx0) of one shape, with specials: up to 70 rows of up to 20 values."""
    shape = (draw(st.integers(1, 70)), draw(st.integers(1, 20)))
    return tuple(draw(with_specials(shape)) for _ in range(4))


@KERNEL_SETTINGS
@given(case=log_softmax_cases(), accumulate=st.sampled_from([0, 1]))
def test_log_softmax_of_a_block_of_rows_is_each_rows(rt, case, accumulate):
    """Short rows go through ht_log_softmax_fwd and _bwd a vector's worth or eight at a time:
    the same bits as one by one."""
    ffi, lib = rt
    x, dy, y, dx0 = case
    rows, cols = x.shape
    together, alone = garbage(x.shape), garbage(x.shape)
    lib.ht_log_softmax_fwd(ptr(ffi, together), ptr(ffi, x), rows, cols)
    for r in range(rows):
        lib.ht_log_softmax_fwd(ptr(ffi, alone[r]), ptr(ffi, x[r].copy()), 1, cols)
    np.testing.assert_array_equal(together.view(np.uint32), alone.view(np.uint32))
    together, alone = dx0.copy(), dx0.copy()
    lib.ht_log_softmax_bwd(ptr(ffi, together), ptr(ffi, dy), ptr(ffi, y), rows, cols, accumulate)
    for r in range(rows):
        row = alone[r].copy()
        lib.ht_log_softmax_bwd(ptr(ffi, row), ptr(ffi, dy[r].copy()), ptr(ffi, y[r].copy()), 1,
                               cols, accumulate)
        alone[r] = row
    np.testing.assert_array_equal(together.view(np.uint32), alone.view(np.uint32))


# ---- losses, reductions, argmax ----

@st.composite
def classification_cases(draw):
    """(logits[rows,cols] with specials, targets[rows], dloss)."""
    rows, cols = draw(st.integers(1, 9)), draw(st.integers(1, 20))
    logits = draw(with_specials((rows, cols)))
    target = np.array(draw(st.lists(st.integers(0, cols - 1), min_size=rows, max_size=rows)), np.int64)
    return logits, target, draw(SCALARS)


@pytest.mark.parametrize("mean", [1, 0])
@KERNEL_SETTINGS
@given(case=classification_cases())
def test_nll_loss(rt, mean, case):
    """nll_loss of log-probabilities with specials (as given: only the targets' are read)."""
    ffi, lib = rt
    logp, target, dloss = case
    rows, cols = logp.shape
    reduction = "mean" if mean else "sum"
    expected, (g,) = grads(lambda t: F.nll_loss(t, torch.tensor(target), reduction=reduction), logp,
                           dy=np.float32(dloss))
    loss = garbage(1)
    assert lib.ht_nll_loss_fwd(ptr(ffi, loss), ptr(ffi, logp), ptr(ffi, target), rows, cols, mean) == 0
    assert_close(loss[0], expected)
    d = garbage((rows, cols))
    lib.ht_nll_loss_bwd(ptr(ffi, d), dloss, ptr(ffi, target), rows, cols, mean, 0)
    assert_close(d, g)


@KERNEL_SETTINGS
@given(case=classification_cases())
def test_cross_entropy(rt, case):
    """F.cross_entropy as compiled code computes it: log_softmax then nll_loss, and back."""
    ffi, lib = rt
    logits, target, dloss = case
    rows, cols = logits.shape
    expected, (g,) = grads(lambda t: F.cross_entropy(t, torch.tensor(target)), logits, dy=np.float32(dloss))
    logp, loss = garbage((rows, cols)), garbage(1)
    lib.ht_log_softmax_fwd(ptr(ffi, logp), ptr(ffi, logits), rows, cols)
    assert lib.ht_nll_loss_fwd(ptr(ffi, loss), ptr(ffi, logp), ptr(ffi, target), rows, cols, 1) == 0
    assert_close(loss[0], expected)
    dlogp, dlogits = garbage((rows, cols)), garbage((rows, cols))
    lib.ht_nll_loss_bwd(ptr(ffi, dlogp), dloss, ptr(ffi, target), rows, cols, 1, 0)
    lib.ht_log_softmax_bwd(ptr(ffi, dlogits), ptr(ffi, dlogp), ptr(ffi, logp), rows, cols, 0)
    assert_close(dlogits, g)


@KERNEL_SETTINGS
@given(case=same_shape(2), dloss=SCALARS)
def test_mse_loss(rt, case, dloss):
    ffi, lib = rt
    x, target = case
    expected, (gx,) = grads(lambda t: F.mse_loss(t, torch.tensor(target)), x, dy=np.float32(dloss))
    loss = garbage(1)
    lib.ht_mse_loss_fwd(ptr(ffi, loss), ptr(ffi, x), ptr(ffi, target), x.size)
    assert_close(loss[0], expected)
    dx = garbage(x.shape)
    lib.ht_mse_loss_bwd(ptr(ffi, dx), dloss, ptr(ffi, x), ptr(ffi, target), x.size, 0)
    assert_close(dx, gx)


@pytest.mark.parametrize("kernel,torch_fn", [("sum_all", torch.sum), ("mean_all", torch.mean)])
@KERNEL_SETTINGS
@given(case=same_shape(1), dout=SCALARS)
@example(case=(f32([INF, 1.0]),), dout=1.0)
@example(case=(f32([INF, -INF, 1.0]),), dout=INF)
def test_sum_and_mean(rt, kernel, torch_fn, case, dout):
    ffi, lib = rt
    (x,) = case
    expected, (gx,) = grads(torch_fn, x, dy=np.float32(dout))
    out = garbage(1)
    getattr(lib, f"ht_{kernel}")(ptr(ffi, out), ptr(ffi, x), x.size)
    assert_close(out[0], expected)
    dx = garbage(x.shape)
    getattr(lib, f"ht_{kernel}_bwd")(ptr(ffi, dx), dout, x.size, 0)
    assert_close(dx, gx)


@KERNEL_SETTINGS
@given(case=same_shape(1, max_rank=2))
@example(case=(f32([[1.0, INF, NAN, 2.0], [-INF, -INF, -INF, -INF], [NAN, NAN, INF, 0.0], [1.0, INF, INF, 2.0]]),))
def test_argmax_rows(rt, case):
    ffi, lib = rt
    x = case[0].reshape(case[0].shape[0], -1)
    idx = np.full(x.shape[0], -1, np.int64)
    lib.ht_argmax_rows(ptr(ffi, idx), ptr(ffi, x), *x.shape)
    np.testing.assert_array_equal(idx, torch.argmax(torch.tensor(x), dim=1).numpy())


# ---- end to end ----

@pytest.mark.parametrize("batch_size", [1, 4])
def test_mnist_mlp_with_one_nan_weight_trains_to_nan_like_eager(batch_size, capfd):
    """One NaN weight in the first layer: eager PyTorch's loss is NaN, and so is the compiled
    loop's; after two steps, NaN sits in the same entries of every parameter (the hidden units
    the NaN reached through relu, forward and backward, and all of the second layer)."""
    # Imported here so that the kernel tests above need only the C runtime.
    import hy  # noqa: F401  (imports the .hy example)
    import hytorch
    from hytorch.examples.mnist_mlp import demo_setup, train

    runs = []
    for compiled in (False, True):
        model, optimizer, loader, _ = demo_setup(None, batch_size, 3, limit=2 * batch_size)
        with torch.no_grad():
            model.fc1.weight[0, 0] = NAN
        if compiled:
            loss = hytorch.stage(train, model, optimizer, loader, int, int)(model, optimizer, loader, 1, 1000)
        else:
            loss = train(model, optimizer, loader, 1, 1000)
        runs.append((loss, [p.detach().clone() for p in model.parameters()]))
    capfd.readouterr()
    (eager_loss, eager_params), (compiled_loss, compiled_params) = runs
    assert math.isnan(eager_loss)
    assert math.isnan(compiled_loss)
    for eager, compiled in zip(eager_params, compiled_params):
        torch.testing.assert_close(compiled, eager, equal_nan=True, rtol=1e-4, atol=1e-4)
    fc1_rows_nan = torch.isnan(eager_params[0]).any(dim=1)
    assert 1 < fc1_rows_nan.sum() < len(fc1_rows_nan), "the NaN reached some hidden units, not all"
