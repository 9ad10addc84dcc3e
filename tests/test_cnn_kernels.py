"""The CNN kernels of c_runtime/ (conv2d, max/avg pooling, dropout, Adam/AdamW) against PyTorch.

Forward and backward against torch.nn.functional and torch.autograd on drawn shapes, strides and
paddings; NaN and infinities through every kernel as torch propagates them (a NaN in a pooling
window wins, as in torch); dropout's mask against a NumPy recomputation from
hytorch.rng.SplitMix64; Adam and AdamW against torch.optim over many steps. Every test runs
against each of c_harness.BUILDS (native, and on x86-64 the AVX2 and SSE2 vector paths).
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from c_harness import BUILDS, KERNELS_CDEF, f32, garbage, grads, load_runtime, ptr
from hytorch import machine
from hytorch import rng as splitmix
from hytorch.rng import SplitMix64

NAN, INF = float("nan"), float("inf")
GEMM_TOL = dict(rtol=1e-4, atol=1e-4)  # sums of up to a few hundred products in another order
EXACT_TOL = dict(rtol=1e-6, atol=0.0)  # one rounding apart

KERNEL_SETTINGS = settings(max_examples=25, deadline=None,
                           suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module", params=list(BUILDS))
def rt(request):
    ffi, lib = load_runtime(KERNELS_CDEF + machine.RUNTIME_CDEF, BUILDS[request.param])
    yield ffi, lib
    lib.ht_set_num_threads(1)


def u8(ffi, a):
    return ffi.from_buffer("uint8_t[]", a)


def assert_close(actual, expected, **tol):
    torch.testing.assert_close(torch.as_tensor(np.asarray(actual)), torch.as_tensor(np.asarray(expected)),
                               equal_nan=True, **tol)


def random_f32(rng, *shape, scale=1.0):
    return f32(rng.uniform(-scale, scale, size=shape))


SPECIALS = st.sampled_from([NAN, INF, -INF])
FINITE = st.floats(-4, 4, width=32)


@st.composite
def with_specials(draw, shape, max_specials=4):
    """A float32 array of `shape`: finite values with up to `max_specials` nan/inf/-inf."""
    a = draw(arrays(np.float32, shape, elements=FINITE))
    flat = a.reshape(-1)
    for position, value in draw(st.lists(st.tuples(st.integers(0, flat.size - 1), SPECIALS),
                                         max_size=max_specials)):
        flat[position] = value
    return a


# ---- conv2d ----

@st.composite
def conv_shapes(draw, max_batch=3, max_channels=5, max_size=11):
    """(n, c, h, w, oc, kh, kw, sh, sw, ph, pw) with at least one output position."""
    n, c, oc = draw(st.integers(1, max_batch)), draw(st.integers(1, max_channels)), draw(st.integers(1, max_channels))
    h, w = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    kh, kw = draw(st.integers(1, min(5, h + 2 * ph))), draw(st.integers(1, min(5, w + 2 * pw)))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return n, c, h, w, oc, kh, kw, sh, sw, ph, pw


# The blog CNN's two convolutions (at a small batch), 1x1 (no columns), wide rows (vector tails).
CONV_EXAMPLES = [(2, 1, 28, 28, 32, 3, 3, 1, 1, 0, 0), (2, 32, 26, 26, 64, 3, 3, 1, 1, 0, 0),
                 (3, 7, 5, 6, 4, 1, 1, 1, 1, 0, 0), (2, 3, 9, 40, 5, 3, 5, 2, 1, 1, 2),
                 (1, 2, 3, 3, 3, 3, 3, 1, 1, 2, 2)]


class Conv:
    """One conv2d geometry: its output size, its workspace and the kernels' size arguments."""

    def __init__(self, rt, shape):
        self.ffi, self.lib = rt
        self.n, self.c, self.h, self.w, self.oc, self.kh, self.kw, self.sh, self.sw, self.ph, self.pw = shape
        self.oh = (self.h + 2 * self.ph - self.kh) // self.sh + 1
        self.ow = (self.w + 2 * self.pw - self.kw) // self.sw + 1
        self.sizes = shape
        floats = self.lib.ht_conv2d_workspace(*shape[1:])
        self.workspace = garbage(floats)  # any content: NaN shows a read before a write

    def p(self, a):
        return ptr(self.ffi, a)

    def forward(self, x, W, b):
        y = garbage((self.n, self.oc, self.oh, self.ow))
        self.lib.ht_conv2d_fwd(self.p(y), self.p(x), self.p(W), self.p(b), self.p(self.workspace), *self.sizes)
        return y

    def backward_input(self, dx, dy, W, accumulate):
        self.lib.ht_conv2d_bwd_input(self.p(dx), self.p(dy), self.p(W), self.p(self.workspace), *self.sizes,
                                     accumulate)

    def backward_weight(self, dW, dy, x):
        self.lib.ht_conv2d_bwd_weight(self.p(dW), self.p(dy), self.p(x), self.p(self.workspace), *self.sizes)

    def backward_bias(self, db, dy):
        self.lib.ht_conv2d_bwd_bias(self.p(db), self.p(dy), self.n, self.oc, self.oh, self.ow)

    def torch_fn(self, with_bias):
        stride, padding = (self.sh, self.sw), (self.ph, self.pw)
        if with_bias:
            return lambda x, W, b: F.conv2d(x, W, b, stride=stride, padding=padding)
        return lambda x, W: F.conv2d(x, W, stride=stride, padding=padding)


def conv_case(conv, seed):
    rng = np.random.default_rng(seed)
    fan_in = conv.c * conv.kh * conv.kw
    x = random_f32(rng, conv.n, conv.c, conv.h, conv.w)
    W = random_f32(rng, conv.oc, conv.c, conv.kh, conv.kw, scale=1 / np.sqrt(fan_in))
    b = random_f32(rng, conv.oc)
    dy = random_f32(rng, conv.n, conv.oc, conv.oh, conv.ow)
    return x, W, b, dy


@pytest.mark.parametrize("with_bias", [True, False])
@KERNEL_SETTINGS
@given(shape=conv_shapes(), seed=st.integers(0, 2**32 - 1))
@example(shape=CONV_EXAMPLES[0], seed=0)
@example(shape=CONV_EXAMPLES[1], seed=1)
@example(shape=CONV_EXAMPLES[2], seed=2)
@example(shape=CONV_EXAMPLES[3], seed=3)
@example(shape=CONV_EXAMPLES[4], seed=4)
def test_conv2d_forward_and_backward(rt, with_bias, shape, seed):
    conv = Conv(rt, shape)
    x, W, b, dy = conv_case(conv, seed)
    inputs = (x, W, b) if with_bias else (x, W)
    expected_y, expected = grads(conv.torch_fn(with_bias), *inputs, dy=dy)
    gx, gW = expected[:2]

    assert_close(conv.forward(x, W, b if with_bias else None), expected_y, **GEMM_TOL)

    dx = garbage(x.shape)
    conv.backward_input(dx, dy, W, 0)
    assert_close(dx, gx, **GEMM_TOL)
    dx0 = random_f32(np.random.default_rng(seed + 1), *x.shape)
    dx = dx0.copy()
    conv.backward_input(dx, dy, W, 1)
    assert_close(dx, dx0 + gx, **GEMM_TOL)

    dW0 = random_f32(np.random.default_rng(seed + 2), *W.shape)
    dW = dW0.copy()
    conv.backward_weight(dW, dy, x)
    assert_close(dW, dW0 + gW, **GEMM_TOL)

    if with_bias:
        db0 = random_f32(np.random.default_rng(seed + 3), *b.shape)
        db = db0.copy()
        conv.backward_bias(db, dy)
        assert_close(db, db0 + expected[2], **GEMM_TOL)


# Large enough that columns, col2im and the products go to several threads.
THREADED_CONVS = [CONV_EXAMPLES[1], (2, 12, 31, 29, 24, 5, 3, 2, 1, 2, 0), (2, 64, 16, 16, 32, 1, 1, 1, 1, 0, 0)]


@pytest.mark.parametrize("shape", THREADED_CONVS)
def test_conv2d_gives_the_same_bits_on_any_thread_count(rt, shape):
    """Columns, transposes and col2im are split over threads, the products by the engine:
    each output element is still computed the same way."""
    conv = Conv(rt, shape)
    x, W, b, dy = conv_case(conv, 5)

    def run():
        dx, dW = garbage(x.shape), np.zeros(W.shape, np.float32)
        conv.backward_input(dx, dy, W, 0)
        conv.backward_weight(dW, dy, x)
        return conv.forward(x, W, b), dx, dW

    ffi, lib = rt
    lib.ht_set_num_threads(1)
    one = run()
    for threads in (2, 3):
        lib.ht_set_num_threads(threads)
        for a, b_ in zip(one, run()):
            np.testing.assert_array_equal(a, b_)
    lib.ht_set_num_threads(1)


@st.composite
def threaded_conv_shapes(draw):
    """Shapes whose kernels split over threads: batches of more samples than the weight
    gradient has groups (16), samples of more positions than a block holds (1024)."""
    n, c, oc = draw(st.integers(1, 20)), draw(st.integers(1, 6)), draw(st.integers(1, 20))
    h, w = draw(st.integers(3, 40)), draw(st.integers(3, 40))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw, ph, pw = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(0, 1)), draw(st.integers(0, 1))
    return n, c, h, w, oc, kh, kw, sh, sw, ph, pw


def summed_tol(conv):
    """GEMM_TOL for a weight gradient, a sum over every output position of the batch: float32
    rounding grows as the square root of the terms (found: 13 samples of 31x35 positions, a
    dW element of 14,105 terms off torch's by 3.4e-4, torch's own order)."""
    terms = conv.n * conv.oh * conv.ow
    return dict(rtol=GEMM_TOL["rtol"], atol=GEMM_TOL["atol"] * max(1.0, (terms / 400) ** 0.5))


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(shape=threaded_conv_shapes(), seed=st.integers(0, 2**32 - 1))
@example(shape=(3, 2, 40, 38, 8, 3, 3, 1, 1, 1, 1), seed=0)  # 1520 positions: two blocks
@example(shape=(17, 4, 12, 12, 5, 3, 3, 2, 1, 0, 1), seed=1)  # 17 samples in 16 groups
@example(shape=(13, 2, 31, 35, 16, 3, 1, 1, 1, 0, 0), seed=0)  # 14,105 terms a dW element
def test_conv2d_on_threads_matches_torch_with_the_same_bits(rt, shape, seed):
    """Blocks of a sample (forward), samples (input gradient) and groups of samples (weight
    gradient) shared by the threads: as torch computes, and the same bits at any count."""
    conv = Conv(rt, shape)
    x, W, b, dy = conv_case(conv, seed)
    expected_y, (gx, gW, gb) = grads(conv.torch_fn(True), x, W, b, dy=dy)
    ffi, lib = rt

    def run():
        dx, dW = garbage(x.shape), np.zeros(W.shape, np.float32)
        conv.backward_input(dx, dy, W, 0)
        conv.backward_weight(dW, dy, x)
        return conv.forward(x, W, b), dx, dW

    lib.ht_set_num_threads(1)
    one = run()
    for got, want, tol in zip(one, (expected_y, gx, gW), (GEMM_TOL, GEMM_TOL, summed_tol(conv))):
        assert_close(got, want, **tol)
    for threads in (2, 3):
        lib.ht_set_num_threads(threads)
        for a, b_ in zip(one, run()):
            np.testing.assert_array_equal(a, b_)
    lib.ht_set_num_threads(1)


# Channels-last columns of the weight gradient in every build (at least a vector of channels: 4,
# 8 or 16), strided and padded, some taps in the padding.
CHANNELS_LAST_CONVS = [(3, 16, 9, 11, 20, 3, 3, 2, 1, 1, 2), (2, 40, 7, 5, 9, 2, 3, 1, 3, 0, 1)]


@KERNEL_SETTINGS
@given(shape=conv_shapes(max_batch=3, max_channels=40, max_size=9), threads=st.sampled_from([1, 2, 3]),
       seed=st.integers(0, 2**32 - 1))
@example(shape=CHANNELS_LAST_CONVS[0], threads=1, seed=0)
@example(shape=CHANNELS_LAST_CONVS[1], threads=2, seed=1)
def test_conv2d_backward_over_many_channels_matches_torch(rt, shape, threads, seed):
    """With at least a vector of channels the weight gradient builds its columns channels-last
    (the taps of a position as runs of whole vectors): dW as torch computes it, with dx beside
    it (overwritten and accumulated), and the same bits at any thread count."""
    conv = Conv(rt, shape)
    x, W, _, dy = conv_case(conv, seed)
    _, (gx, gW) = grads(conv.torch_fn(False), x, W, dy=dy)
    ffi, lib = rt

    def run():
        dx, dW = garbage(x.shape), random_f32(np.random.default_rng(seed + 1), *W.shape)
        dx_sum = random_f32(np.random.default_rng(seed + 2), *x.shape)
        conv.backward_input(dx, dy, W, 0)
        conv.backward_input(dx_sum, dy, W, 1)
        conv.backward_weight(dW, dy, x)
        return dx, dx_sum, dW

    lib.ht_set_num_threads(1)
    one = run()
    dx, dx_sum, dW = one
    assert_close(dx, gx, **GEMM_TOL)
    assert_close(dx_sum, random_f32(np.random.default_rng(seed + 2), *x.shape) + gx, **GEMM_TOL)
    assert_close(dW, random_f32(np.random.default_rng(seed + 1), *W.shape) + gW, **GEMM_TOL)
    lib.ht_set_num_threads(threads)
    for a, b_ in zip(one, run()):
        np.testing.assert_array_equal(a, b_)
    lib.ht_set_num_threads(1)


@KERNEL_SETTINGS
@given(shape=conv_shapes(max_batch=4, max_channels=6, max_size=30), threads=st.sampled_from([1, 2]),
       seed=st.integers(0, 2**32 - 1))
@example(shape=(2, 32, 24, 24, 64, 3, 3, 1, 1, 1, 1), threads=1, seed=0)  # the blog's conv2, padded
def test_conv2d_without_columns_sums_as_with_them(rt, shape, threads, seed):
    """At stride 1 without padding the forward reads x in place of building columns: the same
    sums in the same order, bit for bit, as the columns of the same convolution written with
    padding (which builds them) over the input without it (the padding's zeros add nothing)."""
    n, c, h, w, oc, kh, kw, _, _, ph, pw = shape
    padded = Conv(rt, (n, c, h, w, oc, kh, kw, 1, 1, ph, pw))
    x, W, b, _ = conv_case(padded, seed)
    bare = Conv(rt, (n, c, h + 2 * ph, w + 2 * pw, oc, kh, kw, 1, 1, 0, 0))
    x_padded = f32(np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))))
    ffi, lib = rt
    lib.ht_set_num_threads(threads)
    y = bare.forward(x_padded, W, b)
    np.testing.assert_array_equal(y, padded.forward(x, W, b))
    assert_close(y, F.conv2d(torch.tensor(x_padded), torch.tensor(W), torch.tensor(b)), **GEMM_TOL)
    lib.ht_set_num_threads(1)


@KERNEL_SETTINGS
@given(data=st.data())
def test_conv2d_propagates_nan_and_infinities_like_torch(rt, data):
    """NaN and infinities in the input, weights or bias: whether a sum is NaN, +inf or -inf does
    not depend on its order. No padding: ours multiplies the padding's zeros by the weights
    (0 * inf is NaN) and torch's kernels differ among themselves there."""
    n, c, h, w, oc, kh, kw, sh, sw, _, _ = data.draw(conv_shapes(max_size=7))
    conv = Conv(rt, (n, c, h, w, oc, min(kh, h), min(kw, w), sh, sw, 0, 0))
    x = data.draw(with_specials((n, c, h, w)))
    W = data.draw(with_specials((oc, c, conv.kh, conv.kw), max_specials=2))
    b = data.draw(with_specials((oc,), max_specials=1))
    expected = F.conv2d(torch.tensor(x), torch.tensor(W), torch.tensor(b), stride=(sh, sw)).numpy()
    assert_close(conv.forward(x, W, b), expected, **GEMM_TOL)


@KERNEL_SETTINGS
@given(data=st.data(), threads=st.sampled_from([1, 2]))
def test_conv2d_relu_is_relu_of_the_convolution_bit_for_bit(rt, data, threads):
    """ht_conv2d_relu_fwd writes relu(ht_conv2d_fwd's outputs) as ht_relu_fwd computes it (NaN
    kept, -0.0 kept), with and without a bias, on either forward (with columns or without)."""
    shape = data.draw(conv_shapes(max_channels=20, max_size=12))
    conv = Conv(rt, shape)
    x = data.draw(with_specials((conv.n, conv.c, conv.h, conv.w)))
    W = data.draw(with_specials((conv.oc, conv.c, conv.kh, conv.kw), max_specials=1))
    b = data.draw(st.sampled_from([None, f32(np.linspace(-1, 1, conv.oc))]))
    ffi, lib = rt
    lib.ht_set_num_threads(threads)
    y = conv.forward(x, W, b)
    relu_y = garbage(y.shape)
    lib.ht_conv2d_relu_fwd(conv.p(relu_y), conv.p(x), conv.p(W), conv.p(b), conv.p(conv.workspace), *conv.sizes)
    lib.ht_set_num_threads(1)
    np.testing.assert_array_equal(relu_y, np.where(y < 0, np.float32(0), y))
    assert_close(relu_y, F.relu(torch.tensor(y)), **EXACT_TOL)


def check_conv_relu_max_pool2d(rt, conv, window, x, W, b, gy, threads, accumulate):
    """ht_conv2d_relu_max_pool2d_fwd gives what ht_conv2d_fwd, ht_max_pool2d_fwd and ht_relu_fwd
    give one after the other, and ht_conv2d_pool_bwd_input / _weight for the pooled gradient
    `gy` what ht_conv2d_bwd_input / _weight give for ht_relu_max_pool2d_bwd's dy: bit for bit
    (the maxima's indices too), on `threads` threads, inside ht_conv2d_pool_workspace's floats."""
    ffi, lib = rt
    lib.ht_set_num_threads(threads)
    pooled = gy.shape
    expected, expected_idx = garbage(pooled), np.zeros(pooled, np.int64)
    planes = (conv.n * conv.oc, conv.oh, conv.ow, *window)
    lib.ht_max_pool2d_fwd(conv.p(expected), conv.p(expected_idx), conv.p(conv.forward(x, W, b)), *planes)
    lib.ht_relu_fwd(conv.p(expected), conv.p(expected), expected.size)
    dy = garbage((conv.n, conv.oc, conv.oh, conv.ow))
    lib.ht_relu_max_pool2d_bwd(conv.p(dy), conv.p(gy), conv.p(expected), conv.p(expected_idx), *planes, 0)
    dx0 = random_f32(np.random.default_rng(1), *x.shape)
    expected_dx, expected_dW = dx0.copy(), np.zeros(W.shape, np.float32)
    conv.backward_input(expected_dx, dy, W, accumulate)
    conv.backward_weight(expected_dW, dy, x)

    floats = lib.ht_conv2d_pool_workspace(*conv.sizes[1:])
    guarded = np.full(floats + 4096, 1234.5, np.float32)
    y, idx = garbage(pooled), np.zeros(pooled, np.int64)
    lib.ht_conv2d_relu_max_pool2d_fwd(conv.p(y), conv.p(idx), conv.p(x), conv.p(W), conv.p(b),
                                      conv.p(guarded), *conv.sizes, *window)
    dx, dW = dx0.copy() if accumulate else garbage(x.shape), np.zeros(W.shape, np.float32)
    pooled_grad = (conv.p(gy), conv.p(y), conv.p(idx))
    lib.ht_conv2d_pool_bwd_input(conv.p(dx), *pooled_grad, conv.p(W), conv.p(guarded), *conv.sizes,
                                 *window, accumulate)
    lib.ht_conv2d_pool_bwd_weight(conv.p(dW), *pooled_grad, conv.p(x), conv.p(guarded), *conv.sizes,
                                  *window)
    lib.ht_set_num_threads(1)
    np.testing.assert_array_equal(y.view(np.uint32), expected.view(np.uint32))
    np.testing.assert_array_equal(idx, expected_idx)
    np.testing.assert_array_equal(dx.view(np.uint32), expected_dx.view(np.uint32))
    np.testing.assert_array_equal(dW.view(np.uint32), expected_dW.view(np.uint32))
    assert (guarded[floats:] == 1234.5).all()


def pooled_shape(conv, window):
    pkh, pkw, psh, psw = window
    return (conv.n, conv.oc, (conv.oh - pkh) // psh + 1, (conv.ow - pkw) // psw + 1)


@KERNEL_SETTINGS
@given(data=st.data(), threads=st.sampled_from([1, 2, 3]), accumulate=st.sampled_from([0, 1]))
def test_conv2d_relu_max_pool2d_and_its_gradients_bit_for_bit(rt, data, threads, accumulate):
    """On either forward (with columns or without) and either weight gradient (channels-last
    or not), with and without a bias, NaN and infinities in the input, weights and gradient,
    windows overlapping or apart."""
    n, c, h, w, oc, kh, kw, sh, sw, ph, pw = data.draw(conv_shapes(max_channels=20, max_size=12))
    if data.draw(st.booleans()):   # stride 1, no padding: the forward without columns
        kh, kw, sh, sw, ph, pw = min(kh, h), min(kw, w), 1, 1, 0, 0
    conv = Conv(rt, (n, c, h, w, oc, kh, kw, sh, sw, ph, pw))
    window = (data.draw(st.integers(1, min(3, conv.oh))), data.draw(st.integers(1, min(3, conv.ow))),
              data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    x = data.draw(with_specials((conv.n, conv.c, conv.h, conv.w)))
    W = data.draw(with_specials((conv.oc, conv.c, conv.kh, conv.kw), max_specials=1))
    b = data.draw(st.sampled_from([None, f32(np.linspace(-1, 1, conv.oc))]))
    gy = data.draw(with_specials(pooled_shape(conv, window), max_specials=2))
    check_conv_relu_max_pool2d(rt, conv, window, x, W, b, gy, threads, accumulate)


@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_relu_max_pool2d_blog_shape(rt, threads):
    """The blog CNN's second convolution, relu and max_pool2d(2), and their gradients."""
    conv = Conv(rt, (3, 32, 26, 26, 64, 3, 3, 1, 1, 0, 0))
    x, W, b, _ = conv_case(conv, 3)
    gy = random_f32(np.random.default_rng(4), *pooled_shape(conv, (2, 2, 2, 2)))
    check_conv_relu_max_pool2d(rt, conv, (2, 2, 2, 2), x, W, b, gy, threads, 0)


@pytest.mark.parametrize("shape", THREADED_CONVS + CHANNELS_LAST_CONVS + [(9, 3, 12, 40, 70, 3, 3, 1, 1, 1, 1)])
def test_conv2d_workspace_covers_every_kernel(rt, shape):
    """Every kernel stays inside ht_conv2d_workspace's floats at any thread count (each task
    its own lane of scratch, the weight gradient's partial sums after the lanes): the floats
    past its end keep their contents."""
    conv = Conv(rt, shape)
    ffi, lib = rt
    floats = lib.ht_conv2d_workspace(*shape[1:])
    guarded = np.full(floats + 4096, 1234.5, np.float32)
    conv.workspace = guarded[:floats]
    x, W, b, dy = conv_case(conv, 7)
    for threads in (1, 2, 3, 9):
        lib.ht_set_num_threads(threads)
        conv.forward(x, W, b)
        conv.backward_input(garbage(x.shape), dy, W, 0)
        conv.backward_weight(np.zeros(W.shape, np.float32), dy, x)
        assert (guarded[floats:] == 1234.5).all()
    lib.ht_set_num_threads(1)


# ---- pooling ----

@st.composite
def pool_cases(draw):
    """(x[n,c,h,w], (kh, kw), (sh, sw), dy) with whole windows (no padding), NaN and infinities
    among the inputs and the output gradients."""
    # rows of up to 40 outputs: whole vectors of 16 (AVX-512), 8 or 4 and the partial last one
    n, c, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 7)), draw(st.integers(1, 40))
    kh, kw = draw(st.integers(1, min(h, 4))), draw(st.integers(1, min(w, 4)))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    x = draw(with_specials((n, c, h, w), max_specials=6))
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    dy = draw(with_specials((n, c, oh, ow), max_specials=2))
    return x, (kh, kw), (sh, sw), dy


def pool_sizes(x, kernel, stride):
    n, c, h, w = x.shape
    return (n * c, h, w, *kernel, *stride)


# A window with NaN twice (the last wins), one all -inf (its first index), ties (the first wins).
POOL_EXAMPLE = (f32([[[[NAN, 1.0, NAN, 2.0], [3.0, 4.0, 5.0, 6.0]],
                      [[-INF, -INF, 1.0, 1.0], [-INF, -INF, 1.0, 1.0]]]]),
                (2, 2), (2, 2), f32(np.arange(1, 5).reshape(1, 2, 1, 2)))


def wide_pool_example():
    """Rows of 18 outputs at stride 2 (a whole AVX-512 vector and 2 more) with ties and a NaN."""
    x = f32(np.random.default_rng(0).integers(-2, 3, size=(1, 2, 3, 37)))
    x[0, 1, 1, 20] = NAN
    return x, (2, 3), (1, 2), f32(np.random.default_rng(1).uniform(-1, 1, (1, 2, 2, 18)))


@KERNEL_SETTINGS
@given(case=pool_cases())
@example(case=POOL_EXAMPLE)
@example(case=wide_pool_example())
def test_max_pool2d(rt, case):
    ffi, lib = rt
    x, kernel, stride, dy = case
    sizes = pool_sizes(x, kernel, stride)
    expected_y, expected_idx = F.max_pool2d(torch.tensor(x), kernel, stride, return_indices=True)
    _, (gx,) = grads(lambda t: F.max_pool2d(t, kernel, stride), x, dy=dy)

    y, idx = garbage(dy.shape), np.full(dy.shape, -1, np.int64)
    lib.ht_max_pool2d_fwd(ptr(ffi, y), ptr(ffi, idx), ptr(ffi, x), *sizes)
    assert_close(y, expected_y.numpy(), **EXACT_TOL)
    np.testing.assert_array_equal(idx, expected_idx.numpy())

    dx = garbage(x.shape)
    lib.ht_max_pool2d_bwd(ptr(ffi, dx), ptr(ffi, dy), ptr(ffi, idx), *sizes, 0)
    assert_close(dx, gx, **EXACT_TOL)
    dx0 = random_f32(np.random.default_rng(0), *x.shape)
    dx = dx0.copy()
    lib.ht_max_pool2d_bwd(ptr(ffi, dx), ptr(ffi, dy), ptr(ffi, idx), *sizes, 1)
    assert_close(dx, dx0 + gx, rtol=1e-6, atol=1e-6)


def overlapping_nan_example():
    """A NaN input that is the maximum of 8 overlapping windows, whose gradients +inf, -inf
    and a NaN meet on it (CI's hypothesis run found it)."""
    x, dy = np.zeros((1, 1, 3, 18), np.float32), np.zeros((1, 1, 2, 15), np.float32)
    x[0, 0, 1, 4] = dy[0, 0, 1, 1] = NAN
    return x, (2, 4), (1, 1), dy


@KERNEL_SETTINGS
@given(case=pool_cases(), accumulate=st.booleans())
@example(case=POOL_EXAMPLE, accumulate=False)
@example(case=wide_pool_example(), accumulate=True)
@example(case=overlapping_nan_example(), accumulate=False)
def test_relu_max_pool2d_bwd_is_the_pooling_gradient_of_relu_grad_bit_for_bit(rt, case, accumulate):
    """ht_relu_max_pool2d_bwd gives what ht_relu_bwd then ht_max_pool2d_bwd give, bit for bit
    but for the sign of a NaN (NaN and infinities in the gradient and the outputs included),
    and torch's gradient of relu(max_pool2d(x))."""
    ffi, lib = rt
    x, kernel, stride, dy = case
    dy = dy.copy()
    dy.flat[:3] = [NAN, INF, -INF][:dy.size]
    sizes = pool_sizes(x, kernel, stride)
    y, idx = garbage(dy.shape), np.zeros(dy.shape, np.int64)
    lib.ht_max_pool2d_fwd(ptr(ffi, y), ptr(ffi, idx), ptr(ffi, x), *sizes)
    lib.ht_relu_fwd(ptr(ffi, y), ptr(ffi, y), y.size)
    dx0 = random_f32(np.random.default_rng(0), *x.shape)

    masked, expected = garbage(dy.shape), dx0.copy()
    lib.ht_relu_bwd(ptr(ffi, masked), ptr(ffi, dy), ptr(ffi, y), dy.size, 0)
    lib.ht_max_pool2d_bwd(ptr(ffi, expected), ptr(ffi, masked), ptr(ffi, idx), *sizes, int(accumulate))
    dx = dx0.copy() if accumulate else garbage(x.shape)
    lib.ht_relu_max_pool2d_bwd(ptr(ffi, dx), ptr(ffi, dy), ptr(ffi, y), ptr(ffi, idx), *sizes,
                               int(accumulate))
    # A NaN's sign is not part of the result: which of two NaNs (or inf - inf's) a sum keeps
    # is the compiler's choice of operand order.
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(expected))
    np.testing.assert_array_equal(np.where(np.isnan(dx), 0, dx).view(np.uint32),
                                  np.where(np.isnan(expected), 0, expected).view(np.uint32))

    finite = np.nan_to_num(dy, nan=0.5, posinf=2.0, neginf=-2.0)
    _, (gx,) = grads(lambda t: F.relu(F.max_pool2d(t, kernel, stride)), x, dy=finite)
    dx = garbage(x.shape)
    lib.ht_relu_max_pool2d_bwd(ptr(ffi, dx), ptr(ffi, finite), ptr(ffi, y), ptr(ffi, idx), *sizes, 0)
    assert_close(dx, gx, **EXACT_TOL)


@KERNEL_SETTINGS
@given(case=pool_cases())
@example(case=wide_pool_example())
def test_avg_pool2d(rt, case):
    ffi, lib = rt
    x, kernel, stride, dy = case
    sizes = pool_sizes(x, kernel, stride)
    expected_y, (gx,) = grads(lambda t: F.avg_pool2d(t, kernel, stride), x, dy=dy)

    y = garbage(dy.shape)
    lib.ht_avg_pool2d_fwd(ptr(ffi, y), ptr(ffi, x), *sizes)
    assert_close(y, expected_y, **EXACT_TOL)

    dx = garbage(x.shape)
    lib.ht_avg_pool2d_bwd(ptr(ffi, dx), ptr(ffi, dy), *sizes, 0)
    assert_close(dx, gx, rtol=1e-6, atol=1e-7)
    dx0 = random_f32(np.random.default_rng(0), *x.shape)
    dx = dx0.copy()
    lib.ht_avg_pool2d_bwd(ptr(ffi, dx), ptr(ffi, dy), *sizes, 1)
    assert_close(dx, dx0 + gx, rtol=1e-6, atol=1e-6)


GUARD = 64  # outputs past the end of a pooling's (more than any vector holds)


@KERNEL_SETTINGS
@given(case=pool_cases())
@example(case=POOL_EXAMPLE)
@example(case=wide_pool_example())
def test_max_pool2d_writes_only_its_outputs(rt, case):
    """The forward stores whole vectors where the outputs after them are its own (written
    later): nothing past the last output is touched."""
    ffi, lib = rt
    x, kernel, stride, dy = case
    outputs = dy.size
    y, idx = np.full(outputs + GUARD, 7.0, np.float32), np.full(outputs + GUARD, 7, np.int64)
    lib.ht_max_pool2d_fwd(ptr(ffi, y), ptr(ffi, idx), ptr(ffi, x), *pool_sizes(x, kernel, stride))
    expected_y, expected_idx = F.max_pool2d(torch.tensor(x), kernel, stride, return_indices=True)
    assert_close(y[:outputs].reshape(dy.shape), expected_y.numpy(), **EXACT_TOL)
    np.testing.assert_array_equal(idx[:outputs].reshape(dy.shape), expected_idx.numpy())
    assert (y[outputs:] == 7.0).all() and (idx[outputs:] == 7).all()


@pytest.mark.parametrize("planes, h, w", [(128, 24, 24), (7, 100, 99), (33, 40, 41)])
def test_max_pool2d_gives_the_same_results_on_any_thread_count(rt, planes, h, w):
    """Planes split over threads (each task's whole-vector stores stay among its own
    outputs): the outputs torch gives, whatever the thread count."""
    ffi, lib = rt
    x = random_f32(np.random.default_rng(planes), 1, planes, h, w)
    expected_y, expected_idx = F.max_pool2d(torch.tensor(x), 2, return_indices=True)
    for threads in (1, 2, 3):
        lib.ht_set_num_threads(threads)
        y, idx = garbage(expected_y.shape), np.full(expected_y.shape, -1, np.int64)
        lib.ht_max_pool2d_fwd(ptr(ffi, y), ptr(ffi, idx), ptr(ffi, x), planes, h, w, 2, 2, 2, 2)
        np.testing.assert_array_equal(y, expected_y.numpy())
        np.testing.assert_array_equal(idx, expected_idx.numpy())
    lib.ht_set_num_threads(1)


def test_max_pool2d_blog_shape(rt):
    """max_pool2d(2) after the blog CNN's second convolution: 64 channels of 24x24."""
    ffi, lib = rt
    x = random_f32(np.random.default_rng(0), 2, 64, 24, 24)
    dy = random_f32(np.random.default_rng(1), 2, 64, 12, 12)
    expected_y, expected_idx = F.max_pool2d(torch.tensor(x), 2, return_indices=True)
    _, (gx,) = grads(lambda t: F.max_pool2d(t, 2), x, dy=dy)
    y, idx, dx = garbage(dy.shape), np.zeros(dy.shape, np.int64), garbage(x.shape)
    lib.ht_max_pool2d_fwd(ptr(ffi, y), ptr(ffi, idx), ptr(ffi, x), 128, 24, 24, 2, 2, 2, 2)
    lib.ht_max_pool2d_bwd(ptr(ffi, dx), ptr(ffi, dy), ptr(ffi, idx), 128, 24, 24, 2, 2, 2, 2, 0)
    np.testing.assert_array_equal(y, expected_y.numpy())
    np.testing.assert_array_equal(idx, expected_idx.numpy())
    np.testing.assert_array_equal(dx, gx)


# ---- dropout ----

def expected_dropout(x, p, seed):
    """y, mask and the generator's next state, recomputed with hytorch.rng's splitmix64."""
    rng = SplitMix64(seed)
    if p == 0:
        return x.copy(), np.ones(x.size, np.uint8), rng.state
    with np.errstate(invalid="ignore"):  # a dropped infinity: inf * 0 is NaN, as in torch
        if p == 1:
            return x * np.float32(0), np.zeros(x.size, np.uint8), rng.state
        keep = rng.uniform_array(x.size).astype(np.float64) >= p
        scale = np.float32(1) / np.float32(1 - p)
        return x * np.where(keep, scale, np.float32(0)), keep.astype(np.uint8), rng.state


def run_dropout(rt, x, p, seed):
    ffi, lib = rt
    y, mask = garbage(x.shape), np.full(x.size, 7, np.uint8)
    state = ffi.new("uint64_t *", seed)
    lib.ht_dropout_fwd(ptr(ffi, y), u8(ffi, mask), ptr(ffi, x), p, state, x.size)
    return y, mask, state[0]


PROBABILITIES = st.one_of(st.sampled_from([0.0, 1.0, 0.5, 0.25]), st.floats(0, 1))


@KERNEL_SETTINGS
@given(x=arrays(np.float32, st.integers(1, 100), elements=st.one_of(FINITE, SPECIALS)), p=PROBABILITIES,
       seed=st.integers(0, 2**64 - 1))
def test_dropout_matches_a_splitmix64_recomputation(rt, x, p, seed):
    ffi, lib = rt
    y, mask, state = run_dropout(rt, x, p, seed)
    expected_y, expected_mask, expected_state = expected_dropout(x, p, seed)
    np.testing.assert_array_equal(mask, expected_mask)
    np.testing.assert_array_equal(y, expected_y)
    assert state == expected_state

    dy = f32(np.random.default_rng(0).uniform(-1, 1, x.size))
    scale = np.float32(1) / np.float32(1 - p) if p < 1 else np.float32(0)
    expected_dx = dy * np.where(expected_mask == 1, scale, np.float32(0))  # dy is finite
    dx = garbage(x.shape)
    lib.ht_dropout_bwd(ptr(ffi, dx), ptr(ffi, dy), u8(ffi, mask), p, x.size, 0)
    np.testing.assert_array_equal(dx, expected_dx)
    dx0 = f32(np.random.default_rng(1).uniform(-1, 1, x.size))
    dx = dx0.copy()
    lib.ht_dropout_bwd(ptr(ffi, dx), ptr(ffi, dy), u8(ffi, mask), p, x.size, 1)
    np.testing.assert_array_equal(dx, dx0 + expected_dx)


@pytest.mark.parametrize("p", [0.0, 1.0, 0.3])
def test_dropout_scaling_and_specials_as_torch(rt, p):
    """Kept values scaled by 1/(1-p) in float as torch; dropped NaN and infinities give NaN
    (x * 0), p == 0 returns x and p == 1 zeros it (x * 0)."""
    ffi, lib = rt
    x = f32([NAN, INF, -INF, -0.0, 1.5, -3.0, 7.0, 1e30] * 8)
    y, mask, _ = run_dropout(rt, x, p, 11)
    torch_mask = torch.tensor(mask.astype(np.float32))
    if p == 0:
        expected = torch.tensor(x)
    else:  # torch's _dropout_impl with our mask as its bernoulli noise
        expected = torch.tensor(x) * (torch_mask.div_(1 - p) if p < 1 else torch.zeros(()))
    assert_close(y, expected.numpy(), rtol=0, atol=0)
    if p == 0:
        np.testing.assert_array_equal(np.signbit(y), np.signbit(x))
    if p == 1:
        expected_f = F.dropout(torch.tensor(x), p=1.0, training=True)
        assert_close(y, expected_f.numpy(), rtol=0, atol=0)


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
def test_dropout_keeps_one_minus_p_of_the_elements(rt, p):
    """Over 2^16 draws the kept fraction is within 5 standard deviations of 1 - p, and the
    same state gives the same mask while the next state gives another."""
    numel = 1 << 16
    x = np.ones(numel, np.float32)
    y, mask, state = run_dropout(rt, x, p, 2024)
    sigma = np.sqrt(p * (1 - p) / numel)
    assert abs(mask.mean() - (1 - p)) < 5 * sigma
    np.testing.assert_array_equal(y[mask == 1], np.float32(1) / np.float32(1 - p))
    assert np.array_equal(run_dropout(rt, x, p, 2024)[1], mask)
    assert not np.array_equal(run_dropout(rt, x, p, state)[1], mask)


def state_drawing(uniform):
    """The generator state whose next ht_rng_uniform is `uniform` (a multiple of 2^-24): the
    splitmix64 output function undone, step by step."""
    def unshift(z, shift):  # z ^ (z >> shift) undone
        x = z
        for _ in range(64 // shift):
            x = z ^ (x >> shift)
        return x

    z = int(uniform * 2**24) << 40
    z = unshift(z, 31)
    z = unshift(z * pow(splitmix._MIX2, -1, 2**64) & splitmix.MASK64, 27)
    z = unshift(z * pow(splitmix._MIX1, -1, 2**64) & splitmix.MASK64, 30)
    state = (z - splitmix.GAMMA) & splitmix.MASK64
    assert SplitMix64(state).uniform() == uniform
    return state


@pytest.mark.parametrize("p", [0.5, 0.25, 1 - 2**-24])
def test_dropout_keeps_a_draw_equal_to_p(rt, p):
    """Kept when the draw u >= p: u == p is kept, the draw one step below it is dropped."""
    x = np.ones(1, np.float32)
    assert run_dropout(rt, x, p, state_drawing(p))[1][0] == 1
    assert run_dropout(rt, x, p, state_drawing(p - 2**-24))[1][0] == 0


def run_elementwise_kernels(ffi, lib, x, dy, p):
    """relu, max pooling (2x2), dropout and a conv bias gradient, forward and backward, on the
    NCHW x and dy (of x's shape): their outputs."""
    n, c, h, w = x.shape
    planes, pooled = n * c, (n, c, h // 2, w // 2)
    y, dx = garbage(x.shape), garbage(x.shape)
    lib.ht_relu_fwd(ptr(ffi, y), ptr(ffi, x), x.size)
    lib.ht_relu_bwd(ptr(ffi, dx), ptr(ffi, dy), ptr(ffi, y), x.size, 0)
    pool, idx, dpool = garbage(pooled), np.zeros(pooled, np.int64), garbage(x.shape)
    lib.ht_max_pool2d_fwd(ptr(ffi, pool), ptr(ffi, idx), ptr(ffi, x), planes, h, w, 2, 2, 2, 2)
    lib.ht_max_pool2d_bwd(ptr(ffi, dpool), ptr(ffi, pool), ptr(ffi, idx), planes, h, w, 2, 2, 2, 2, 0)
    dropped, mask, ddrop = garbage(x.shape), np.zeros(x.size, np.uint8), garbage(x.shape)
    lib.ht_dropout_fwd(ptr(ffi, dropped), u8(ffi, mask), ptr(ffi, x), p, ffi.new("uint64_t *", 11), x.size)
    lib.ht_dropout_bwd(ptr(ffi, ddrop), ptr(ffi, dy), u8(ffi, mask), p, x.size, 0)
    db = np.zeros(c, np.float32)
    lib.ht_conv2d_bwd_bias(ptr(ffi, db), ptr(ffi, dy), n, c, h, w)
    return y, dx, pool, idx, dpool, dropped, mask, ddrop, db


@settings(max_examples=6, deadline=None)
@given(n=st.integers(1, 9), c=st.integers(1, 40), p=st.sampled_from([0.25, 0.5]),
       seed=st.integers(0, 2**32 - 1))
def test_elementwise_kernels_give_the_same_bits_on_any_thread_count(rt, n, c, p, seed):
    """relu, pooling, dropout (its mask: draw i from the state s0 + i * gamma wherever it is
    drawn) and the bias gradient split their elements, planes or channels over the threads
    from 2**15 elements a thread."""
    rng = np.random.default_rng(seed)
    x, dy = (random_f32(rng, n, c, 36, 38) for _ in range(2))
    ffi, lib = rt
    lib.ht_set_num_threads(1)
    one = run_elementwise_kernels(ffi, lib, x, dy, p)
    assert_close(one[0], torch.relu(torch.tensor(x)), **EXACT_TOL)
    assert_close(one[2], F.max_pool2d(torch.tensor(x), 2), **EXACT_TOL)
    for threads in (2, 3):
        lib.ht_set_num_threads(threads)
        for a, b in zip(one, run_elementwise_kernels(ffi, lib, x, dy, p)):
            np.testing.assert_array_equal(a, b)
    lib.ht_set_num_threads(1)


def test_dropout_in_place(rt):
    ffi, lib = rt
    x = random_f32(np.random.default_rng(0), 50)
    y = x.copy()
    mask = np.zeros(50, np.uint8)
    lib.ht_dropout_fwd(ptr(ffi, y), u8(ffi, mask), ptr(ffi, y), 0.5, ffi.new("uint64_t *", 3), 50)
    np.testing.assert_array_equal(y, expected_dropout(x, 0.5, 3)[0])


# ---- Adam and AdamW ----

ADAM_STEPS = 20


@st.composite
def adam_configs(draw):
    return dict(lr=draw(st.floats(1e-4, 0.1)), betas=(draw(st.floats(0.0, 0.99)), draw(st.floats(0.5, 0.9999))),
                eps=draw(st.sampled_from([1e-8, 1e-6, 1e-3])), weight_decay=draw(st.sampled_from([0.0, 1e-2, 0.1])),
                amsgrad=draw(st.booleans()), maximize=draw(st.booleans()))


def run_adam(rt, optimizer, cfg, numel, steps, seed, grad_scale=1.0):
    """The kernel and torch.optim side by side for `steps` steps; yields (step, ours, torch's)
    parameter and state after each."""
    ffi, lib = rt
    rng = np.random.default_rng(seed)
    w = random_f32(rng, numel)
    param = torch.tensor(w.copy(), requires_grad=True)
    opt = optimizer([param], foreach=False, **cfg)
    m, v = np.zeros(numel, np.float32), np.zeros(numel, np.float32)
    vmax = np.zeros(numel, np.float32) if cfg["amsgrad"] else None
    decoupled = int(optimizer is torch.optim.AdamW)
    for step in range(1, steps + 1):
        g = random_f32(rng, numel, scale=grad_scale)
        param.grad = torch.tensor(g)
        opt.step()
        lib.ht_adam_step(ptr(ffi, w), ptr(ffi, g), ptr(ffi, m), ptr(ffi, v), ptr(ffi, vmax), numel, step,
                         cfg["lr"], *cfg["betas"], cfg["eps"], cfg["weight_decay"], decoupled,
                         int(cfg["amsgrad"]), int(cfg["maximize"]))
        state = opt.state[param]
        yield step, (w, m, v, vmax), (param.detach().numpy(), state["exp_avg"].numpy(),
                                      state["exp_avg_sq"].numpy(),
                                      state["max_exp_avg_sq"].numpy() if cfg["amsgrad"] else None)


def assert_adam_close(ours, theirs):
    """Within 1e-6 relative, or 1e-6 absolute (of the data's scale, 1) for entries that steps of
    lr carried close to zero: torch's scalar loop for the last numel % 16 entries fuses
    multiply-adds that its vector loop does not, so torch differs from itself by an ulp there,
    and a later cancellation makes that ulp large relative to the small result."""
    for got, want in zip(ours, theirs):
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("optimizer", [torch.optim.Adam, torch.optim.AdamW])
@KERNEL_SETTINGS
@given(cfg=adam_configs(), numel=st.integers(1, 70), seed=st.integers(0, 2**32 - 1))
def test_adam_matches_torch_over_many_steps(rt, optimizer, cfg, numel, seed):
    for _, ours, theirs in run_adam(rt, optimizer, cfg, numel, ADAM_STEPS, seed):
        assert_adam_close(ours, theirs)


@pytest.mark.parametrize("optimizer", [torch.optim.Adam, torch.optim.AdamW])
@pytest.mark.parametrize("numel", [1, 15, 16, 17, 1000])
def test_adam_default_hyperparameters(rt, optimizer, numel):
    cfg = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False)
    for _, ours, theirs in run_adam(rt, optimizer, cfg, numel, ADAM_STEPS, numel):
        assert_adam_close(ours, theirs)


@pytest.mark.parametrize("optimizer", [torch.optim.Adam, torch.optim.AdamW])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_propagates_nan_and_infinities_like_torch(rt, optimizer, amsgrad):
    ffi, lib = rt
    numel = 21
    cfg = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, amsgrad=amsgrad, maximize=False)
    w = random_f32(np.random.default_rng(0), numel)
    w[3], w[4] = NAN, INF
    param = torch.tensor(w.copy(), requires_grad=True)
    opt = optimizer([param], foreach=False, **cfg)
    m, v, vmax = (np.zeros(numel, np.float32) for _ in range(3))
    for step, specials in enumerate([{5: NAN, 6: INF}, {7: -INF}, {}], start=1):
        g = random_f32(np.random.default_rng(step), numel)
        for at, value in specials.items():
            g[at] = value
        param.grad = torch.tensor(g)
        opt.step()
        lib.ht_adam_step(ptr(ffi, w), ptr(ffi, g), ptr(ffi, m), ptr(ffi, v), ptr(ffi, vmax), numel, step,
                         cfg["lr"], *cfg["betas"], cfg["eps"], cfg["weight_decay"],
                         int(optimizer is torch.optim.AdamW), int(amsgrad), 0)
        assert_close(w, param.detach().numpy(), rtol=1e-6, atol=1e-6)
        assert_close(v, opt.state[param]["exp_avg_sq"].numpy(), rtol=1e-6, atol=1e-6)
        if amsgrad:  # torch.maximum: NaN wins
            assert_close(vmax, opt.state[param]["max_exp_avg_sq"].numpy(), rtol=1e-6, atol=1e-6)
