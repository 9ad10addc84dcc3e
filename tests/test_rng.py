"""hytorch/rng.py against the C generator of c_runtime/ht_core.h, bit for bit."""
import functools
import pathlib
import re
import tempfile

import numpy as np
import pytest

from c_harness import RUNTIME_DIR, load_runtime
from hytorch.machine import MAX_THREADS
from hytorch.rng import SplitMix64

# ht_rng_next and ht_rng_uniform are static inline: a shim gives them addresses cffi can call.
SHIM = """
#include "ht_core.h"
uint64_t test_rng_next(uint64_t *state) { return ht_rng_next(state); }
float test_rng_uniform(uint64_t *state) { return ht_rng_uniform(state); }
"""


def header_struct(name):
    """The declaration of struct type `name` as c_runtime/ht_data.h has it (comments removed,
    its array sizes' HT_MAX_THREADS as a number)."""
    header = (RUNTIME_DIR / "ht_data.h").read_text()
    struct = re.search(r"typedef struct \{[^}]*?\} " + name + ";", header, re.S).group(0)
    return re.sub(r"/\*.*?\*/", "", struct, flags=re.S).replace("HT_MAX_THREADS",
                                                                 str(MAX_THREADS))


# One cdef for this file and test_data.py, so the runtime is compiled once per test run.
RUNTIME_CDEF = """
uint64_t test_rng_next(uint64_t *state);
float test_rng_uniform(uint64_t *state);
void ht_rng_shuffle(uint64_t *state, int64_t *order, int64_t n);
void ht_rng_fill_uniform(uint64_t *state, float *x, int64_t n, float lo, float hi);
const char *ht_last_error(void);

{LOADER_STRUCT}
{BATCHES_STRUCT}
int ht_loader_init(ht_loader *l);
int64_t ht_loader_len(const ht_loader *l);
void ht_loader_begin_epoch(ht_loader *l);
int64_t ht_loader_fill(const ht_loader *l, int64_t batch, float *x, void *y);
int64_t ht_loader_fill_copies(const ht_loader *l, int64_t batch, float *x, void *y, int copies);
void ht_loader_release(ht_loader *l);
void ht_batches_begin(ht_batches *B, const ht_loader *l, float *xa, float *xb, int copies);
int64_t ht_batches_fill(ht_batches *B, int64_t batch, void *y);
int64_t ht_batches_next(ht_batches *B, int64_t batch, void *y);
void ht_batches_ready(void *B, int thread);
""".replace("{LOADER_STRUCT}", header_struct("ht_loader")).replace(
    "{BATCHES_STRUCT}", header_struct("ht_batches"))
SEEDS = [0, 1, 42, 0x123456789ABCDEF0, 2**64 - 1]


@functools.cache
def runtime():
    """(ffi, lib) of c_runtime/ plus the shim, declared with RUNTIME_CDEF."""
    shim = pathlib.Path(tempfile.mkdtemp(prefix="ht_rng_shim_")) / "rng_shim.c"
    shim.write_text(SHIM)
    return load_runtime(RUNTIME_CDEF, extra_flags=(str(shim),))


@pytest.fixture(scope="module")
def c():
    return runtime()


def c_state(ffi, seed):
    return ffi.new("uint64_t *", seed)


def test_known_first_output_of_seed_zero():
    # The published splitmix64 reference value, independent of our C.
    assert SplitMix64(0).next() == 0xE220A8397B1DCDAF


@pytest.mark.parametrize("seed", SEEDS)
def test_next_matches_c(c, seed):
    ffi, lib = c
    state, rng = c_state(ffi, seed), SplitMix64(seed)
    expected = [lib.test_rng_next(state) for _ in range(1000)]
    assert [rng.next() for _ in range(1000)] == expected
    assert rng.state == state[0]


@pytest.mark.parametrize("seed", SEEDS)
def test_next_array_matches_scalar_next(seed):
    scalar, vector = SplitMix64(seed), SplitMix64(seed)
    expected = [scalar.next() for _ in range(517)]
    assert vector.next_array(500).tolist() + vector.next_array(17).tolist() == expected
    assert vector.state == scalar.state
    assert vector.next_array(0).size == 0 and vector.state == scalar.state


@pytest.mark.parametrize("seed", SEEDS)
def test_uniform_matches_c(c, seed):
    ffi, lib = c
    state, rng = c_state(ffi, seed), SplitMix64(seed)
    expected = [lib.test_rng_uniform(state) for _ in range(1000)]
    got = [rng.uniform() for _ in range(1000)]
    assert got == expected
    assert all(0.0 <= u < 1.0 for u in got)
    assert rng.state == state[0]


@pytest.mark.parametrize("n", [0, 1, 2, 7, 1000, 60000])
@pytest.mark.parametrize("seed", [3, 2**64 - 1])
def test_shuffle_matches_c(c, n, seed):
    ffi, lib = c
    state = c_state(ffi, seed)
    c_order = np.arange(n, dtype=np.int64)
    lib.ht_rng_shuffle(state, ffi.from_buffer("int64_t[]", c_order), n)

    rng = SplitMix64(seed)
    order = np.arange(n, dtype=np.int64)
    assert rng.shuffle(order) is order
    np.testing.assert_array_equal(order, c_order)
    assert rng.state == state[0]

    items = list(range(n))
    SplitMix64(seed).shuffle(items)
    assert items == c_order.tolist()


def test_shuffle_draws_a_fresh_permutation_each_time():
    rng = SplitMix64(5)
    first, second = rng.shuffle(list(range(100))), rng.shuffle(list(range(100)))
    assert sorted(first) == sorted(second) == list(range(100))
    assert first != second


@pytest.mark.parametrize("lo,hi", [(0.0, 1.0), (-1.0, 1.0), (-0.0625, 0.0625), (0.1, 0.7), (-3.3, 1e-3)])
def test_fill_uniform_matches_c(c, lo, hi):
    ffi, lib = c
    n = 10007
    state = c_state(ffi, 99)
    c_values = np.empty(n, dtype=np.float32)
    lib.ht_rng_fill_uniform(state, ffi.from_buffer("float[]", c_values), n, lo, hi)

    rng = SplitMix64(99)
    values = rng.fill_uniform(n, lo, hi)
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values.view(np.uint32), c_values.view(np.uint32))
    assert rng.state == state[0]
    assert values.min() >= np.float32(lo) and values.max() <= np.float32(hi)


def test_shuffle_draws_its_numbers_in_one_vectorised_call(monkeypatch):
    """A shuffle of an epoch's 60,000 indices takes one numpy draw, not 60,000 Python calls
    of next() (checked by counting them: a time limit would depend on the machine)."""
    draws = []
    monkeypatch.setattr(SplitMix64, "next", lambda self: pytest.fail("next() called per item"))
    next_array = SplitMix64.next_array
    monkeypatch.setattr(SplitMix64, "next_array", lambda self, n: draws.append(n) or next_array(self, n))
    order = SplitMix64(1).shuffle(np.arange(60000, dtype=np.int64))
    assert draws == [59999]
    assert sorted(order.tolist()) == list(range(60000))
