"""The batch-1 training step's sweep over a layer's weights (ht_linear_bwd_weight_sgd_fwd with
one row in each batch, ht_gemm_fused.c) against the two kernels it fuses, bit for bit.

With plain SGD the sweep only reads the rows whose output gradient is zero (a ReLU's inactive
units): their update fma(fma(dy, x, +0), -lr, w) leaves them as they are. That holds for finite
x and for lr finite and not negative, except for NaN weights; the tests draw zeros of both
signs in dy, and weights, inputs and learning rates outside those bounds, and compare every
bit (the signs of zeros included; NaN is NaN) with the unfused kernels.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from c_harness import BUILDS, KERNELS_CDEF, f32, garbage, load_runtime, ptr

SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40]  # 1e-40: a subnormal
LEARNING_RATES = [0.0005, 0.1, 0.0, -0.0, -0.01, np.inf, np.nan, 1e-40]


@pytest.fixture(scope="module", params=list(BUILDS))
def rt(request):
    return load_runtime(KERNELS_CDEF, BUILDS[request.param])


@st.composite
def arrays(draw, shape, zeros=0.0, specials=0.0):
    """A float32 array: uniform values, a drawn fraction of them zeros of either sign, and a
    drawn fraction (at most `specials`) infinities, NaNs and subnormals."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = rng.uniform(-1, 1, size=shape)
    zero_fraction = draw(st.sampled_from([0.0, zeros])) if zeros else 0.0
    a[rng.random(shape) < zero_fraction] = 0.0
    a = np.where(rng.random(shape) < 0.5, a, -a)  # zeros of both signs
    if specials and draw(st.booleans()):
        picks = rng.random(shape) < specials
        a[picks] = rng.choice(SPECIALS, size=int(picks.sum()))
    return f32(a)


def same_bits(a, b):
    """a and b are equal bit for bit, but for the sign and payload of NaNs: which NaN an
    operation on two NaNs gives depends on the order of the operands in the instruction that
    the compiler picked."""
    canonical = [np.where(np.isnan(v), np.float32(np.nan), v).view(np.uint32) for v in (a, b)]
    np.testing.assert_array_equal(*canonical)


def sweep_and_reference(ffi, lib, W, dy, x, x_next, sgd):
    """(W, y_next) after the fused step, and after ht_linear_bwd_weight_sgd + ht_linear_fwd."""
    out, inp = W.shape
    W_fused, W_ref = W.copy(), W.copy()
    y_fused, y_ref = garbage((1, out)), garbage((1, out))
    lib.ht_linear_bwd_weight_sgd_fwd(ptr(ffi, W_fused), ffi.NULL, ptr(ffi, dy), ptr(ffi, x), 1, inp,
                                     out, *sgd, ptr(ffi, y_fused), ptr(ffi, x_next), 1, 1, ffi.NULL,
                                     ffi.NULL)
    lib.ht_linear_bwd_weight_sgd(ptr(ffi, W_ref), ffi.NULL, ptr(ffi, dy), ptr(ffi, x), 1, inp, out,
                                 *sgd)
    lib.ht_linear_fwd(ptr(ffi, y_ref), ptr(ffi, x_next), ptr(ffi, W_ref), ffi.NULL, 1, inp, out)
    return (W_fused, y_fused), (W_ref, y_ref)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), inp=st.integers(1, 100), out=st.integers(1, 40),
       lr=st.sampled_from(LEARNING_RATES), steps=st.integers(1, 3))
def test_sweep_with_zero_gradients_equals_the_unfused_kernels(rt, data, inp, out, lr, steps):
    ffi, lib = rt
    W = data.draw(arrays((out, inp), specials=0.02))
    sgd = (lr, 0.0, 0.0, 0.0, 0, 1)  # plain SGD: the variant whose zero-gradient rows stay
    for _ in range(steps):  # successive sweeps go in opposite directions
        dy = data.draw(arrays((1, out), zeros=0.6, specials=0.05))
        x, x_next = (data.draw(arrays((1, inp), specials=0.01)) for _ in range(2))
        (W_fused, y_fused), (W_ref, y_ref) = sweep_and_reference(ffi, lib, W, dy, x, x_next, sgd)
        same_bits(W_fused, W_ref)
        same_bits(y_fused, y_ref)
        W = W_ref


@pytest.mark.parametrize("momentum,weight_decay", [(0.9, 0.0), (0.0, 1e-2)])
def test_zero_gradient_rows_still_move_with_momentum_or_weight_decay(rt, momentum, weight_decay):
    """Rows whose dy is zero change all the same when momentum or weight decay moves them."""
    ffi, lib = rt
    rng = np.random.default_rng(0)
    out, inp = 20, 37
    W, x, x_next = (f32(rng.uniform(-1, 1, shape)) for shape in [(out, inp), (1, inp), (1, inp)])
    dy = np.zeros((1, out), np.float32)
    buf = f32(rng.uniform(-1, 1, (out, inp)))
    W_fused, buf_fused, y = W.copy(), buf.copy(), garbage((1, out))
    sgd = (0.1, momentum, 0.0, weight_decay, 0, 0)
    lib.ht_linear_bwd_weight_sgd_fwd(ptr(ffi, W_fused), ptr(ffi, buf_fused), ptr(ffi, dy),
                                     ptr(ffi, x), 1, inp, out, *sgd, ptr(ffi, y), ptr(ffi, x_next), 1, 1,
                                     ffi.NULL, ffi.NULL)
    assert (W_fused != W).all()
    W_ref, buf_ref = W.copy(), buf.copy()
    lib.ht_linear_bwd_weight_sgd(ptr(ffi, W_ref), ptr(ffi, buf_ref), ptr(ffi, dy), ptr(ffi, x), 1,
                                 inp, out, *sgd)
    same_bits(W_fused, W_ref)
    same_bits(buf_fused, buf_ref)


def test_a_signaling_nan_weight_in_a_zero_gradient_row_is_quieted_as_unfused(rt):
    """The update turns a signaling NaN into a quiet one, so its row is written after all."""
    ffi, lib = rt
    out, inp = 9, 40
    W = f32(np.random.default_rng(1).uniform(-1, 1, (out, inp)))
    W.view(np.uint32)[4, 17] = 0x7F800001  # a signaling NaN
    dy, x, x_next = np.zeros((1, out), np.float32), np.ones((1, inp), np.float32), W[:1].copy()
    (W_fused, y_fused), (W_ref, y_ref) = sweep_and_reference(ffi, lib, W, dy, x, x_next,
                                                             (0.1, 0.0, 0.0, 0.0, 0, 1))
    assert W_ref.view(np.uint32)[4, 17] == 0x7FC00001
    np.testing.assert_array_equal(W_fused.view(np.uint32), W_ref.view(np.uint32))
    same_bits(y_fused, y_ref)
