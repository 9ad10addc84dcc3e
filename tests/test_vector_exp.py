"""The runtime's vector e^x (c_runtime/ht_vmath.h, behind ht_exp_fwd, sigmoid, softmax and
log_softmax) against float64, on a comb through every float32 bit pattern and on hypothesis's
floats, in each build the kernel tests run (native, and the portable vector width): the
correctly rounded float. (Over all 2^32 floats it differs from float(exp(double(x))) in 36,
each within 1e-13 of halfway between two floats; glibc's expf differs in 170,638.)"""
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from c_harness import BUILDS, KERNELS_CDEF, f32, garbage, load_runtime, ptr

MOST_ULPS = 0.5 + 1e-4  # correctly rounded, but where e^x is within 1e-13 of a halfway point
FLT_MAX = float(np.finfo(np.float32).max)


@pytest.fixture(scope="module", params=list(BUILDS))
def rt(request):
    return load_runtime(KERNELS_CDEF, BUILDS[request.param])


def vector_exp(rt, x):
    ffi, lib = rt
    x = f32(x)
    y = garbage(x.shape)
    lib.ht_exp_fwd(ptr(ffi, y), ptr(ffi, x), x.size)
    return y


def ulps_off(got, x):
    """How many units in the last place of the float32 result each of `got` is from e^x
    (float64); an infinity where e^x is past the largest float is 0 off, and so is a NaN where
    x is one."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _ulps_off(got, x)


def _ulps_off(got, x):
    want = np.exp(x.astype(np.float64))
    nan = np.isnan(x)
    overflow = np.isinf(got) & (got > 0) & (want >= FLT_MAX)
    unit = np.spacing(np.minimum(want, FLT_MAX).astype(np.float32)).astype(np.float64)
    off = np.abs(got.astype(np.float64) - want) / unit
    off[nan] = np.where(np.isnan(got[nan]), 0.0, np.inf)
    off[overflow] = 0.0
    return off


def test_every_float_comb(rt):
    """Every 509th float32 bit pattern (8.4 million values, all exponents and signs)."""
    x = np.arange(0, 2**32, 509, dtype=np.uint64).astype(np.uint32).view(np.float32)
    off = ulps_off(vector_exp(rt, x), x)
    worst = int(np.argmax(off))
    assert off[worst] <= MOST_ULPS, f"e^{x[worst]!r}: {off[worst]:.3f} ulps off"


SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 88.72283, 88.722839, 88.72284, -87.33654,
            -87.33655, -103.27893, -103.97207, -103.97208, -104.0, -150.0, 200.0, 1e-8, -1e-8]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=st.lists(st.floats(width=32), min_size=1, max_size=40))
@example(x=SPECIALS)
def test_correctly_rounded_with_expfs_special_values(rt, x):
    x = f32(x)
    got = vector_exp(rt, x)
    off = ulps_off(got, x)
    assert (off <= MOST_ULPS).all(), list(zip(x[off > MOST_ULPS], got[off > MOST_ULPS]))
    assert (np.isnan(got) == np.isnan(x)).all()
    assert (got[x == -np.inf] == 0).all() and (got[x == np.inf] == np.inf).all()
    assert not (got < 0).any()
