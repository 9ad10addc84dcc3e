"""The int64 kernels used by evaluation (ht_int_ops.h) against torch."""
import numpy as np
import pytest
import torch

from c_harness import load_runtime

CDEF = """
void ht_eq_i64(int64_t *y, const int64_t *a, const int64_t *b, int64_t numel);
void ht_sum_all_i64(int64_t *out, const int64_t *x, int64_t numel);
"""


@pytest.fixture(scope="module")
def rt():
    return load_runtime(CDEF)


def ptr(ffi, a):
    return ffi.cast("int64_t *", ffi.from_buffer(a))


@pytest.mark.parametrize("numel", [0, 1, 7, 64, 1000])
def test_eq_and_sum_match_torch(rt, numel):
    ffi, lib = rt
    rng = np.random.default_rng(numel)
    a = rng.integers(0, 4, numel, dtype=np.int64)
    b = rng.integers(0, 4, numel, dtype=np.int64)
    y = np.full(numel, -7, dtype=np.int64)
    lib.ht_eq_i64(ptr(ffi, y), ptr(ffi, a), ptr(ffi, b), numel)
    expected = torch.from_numpy(a).eq(torch.from_numpy(b))
    np.testing.assert_array_equal(y, expected.long().numpy())
    total = np.zeros(1, dtype=np.int64)
    lib.ht_sum_all_i64(ptr(ffi, total), ptr(ffi, y), numel)
    assert total[0] == expected.sum().item()
