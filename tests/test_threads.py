"""Threads: hytorch.set_num_threads / $HYTORCH_THREADS reach every compiled model, and the
matrix products and the data loader's batches give the same bits whatever the thread count.

The products split over threads are those of a batch of at least 16 rows with enough work
for each thread; the shapes below are drawn large enough that every product of a linear
layer is split (shapes decide how, and the test draws both kinds of split).
"""
import contextlib
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hytorch
from c_harness import BUILDS, KERNELS_CDEF, RUNTIME_DIR, f32, garbage, load_runtime, ptr
from hytorch import machine
from hytorch.data import MNIST
from test_data import CLoader, assert_same_epoch, make_split
from test_rng import RUNTIME_CDEF

THREAD_COUNTS = [2, 3, 8]  # more threads than cores is slower, never different

SGD_ARGS = (0.05, 0.9, 0.0, 1e-2, 0)  # lr, momentum, dampening, weight decay, nesterov


@pytest.fixture(scope="module", params=list(BUILDS))
def rt(request):
    ffi, lib = load_runtime(KERNELS_CDEF + machine.RUNTIME_CDEF, BUILDS[request.param])
    yield ffi, lib
    lib.ht_set_num_threads(1)


def test_machine_cdef_matches_header():
    def declarations(text):
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        return {" ".join(d.replace("HT_EXPORT", "").split()) for d in text.split(";") if d.strip()}

    header = (RUNTIME_DIR / "ht_machine.h").read_text()
    assert declarations(header) == declarations(machine.RUNTIME_CDEF)
    assert f"#define HT_MAX_THREADS {machine.MAX_THREADS}\n" in header


# ---- the setting

@pytest.fixture
def fresh_setting(monkeypatch):
    """No set_num_threads call and no $HYTORCH_THREADS, restored afterwards."""
    monkeypatch.setattr(machine, "_chosen", None)
    monkeypatch.delenv(machine.ENVIRONMENT_VARIABLE, raising=False)
    return monkeypatch


def test_one_thread_by_default(fresh_setting):
    assert hytorch.get_num_threads() == 1


@given(n=st.integers(1, machine.MAX_THREADS))
def test_environment_sets_the_default(n):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(machine, "_chosen", None)
        mp.setenv(machine.ENVIRONMENT_VARIABLE, f" {n} ")
        assert hytorch.get_num_threads() == n
        hytorch.set_num_threads(1)
        assert hytorch.get_num_threads() == 1  # the call overrides the environment


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5", "65"])
def test_a_bad_environment_value_is_named(fresh_setting, text):
    fresh_setting.setenv(machine.ENVIRONMENT_VARIABLE, text)
    with pytest.raises(ValueError, match=rf"\$HYTORCH_THREADS='{re.escape(text)}'.* from 1 to 64"):
        hytorch.get_num_threads()


@pytest.mark.parametrize("n", [0, -1, 65, 2.0, True, "2", None])
def test_set_num_threads_rejects_what_is_not_a_thread_count(fresh_setting, n):
    with pytest.raises(ValueError, match="set_num_threads: the number of threads must be"):
        hytorch.set_num_threads(n)
    assert hytorch.get_num_threads() == 1


def test_the_runtime_clamps_its_setting(rt):
    _, lib = rt
    for asked, kept in [(0, 1), (-5, 1), (3, 3), (machine.MAX_THREADS + 1, machine.MAX_THREADS)]:
        lib.ht_set_num_threads(asked)
        assert lib.ht_get_num_threads() == kept


# ---- the kernels give the same bits for every thread count

@st.composite
def batch_shapes(draw):
    """(batch, in, out) with at least 2 * 2**17 multiply-adds in each product of the layer."""
    batch, out = draw(st.integers(16, 40)), draw(st.integers(41, 90))
    return batch, draw(st.integers(-(-2 * 2**17 // (batch * out)), 800)), out


def layer_products(ffi, lib, case):
    """Every product of a linear layer, and a fused SGD step with momentum, on copies of case."""
    x, W, b, dy, buf = (a.copy() for a in case)
    (n, inp), out = x.shape, W.shape[0]
    y, dx, dW = garbage((n, out)), garbage((n, inp)), np.zeros((out, inp), np.float32)
    lib.ht_linear_fwd(ptr(ffi, y), ptr(ffi, x), ptr(ffi, W), ptr(ffi, b), n, inp, out)
    lib.ht_linear_bwd_input(ptr(ffi, dx), ptr(ffi, dy), ptr(ffi, W), n, inp, out, 0)
    lib.ht_linear_bwd_weight(ptr(ffi, dW), ptr(ffi, dy), ptr(ffi, x), n, inp, out)
    lib.ht_linear_bwd_weight_sgd_fwd(ptr(ffi, W), ptr(ffi, buf), ptr(ffi, dy), ptr(ffi, x), n, inp,
                                     out, *SGD_ARGS, 0, ptr(ffi, y), ptr(ffi, x), n, 1, ffi.NULL,
                                     ffi.NULL)
    return y, dx, dW, W, buf


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=batch_shapes(), seed=st.integers(0, 2**32 - 1))
def test_products_do_not_depend_on_the_thread_count(rt, shape, seed):
    ffi, lib = rt
    n, inp, out = shape
    rng = np.random.default_rng(seed)
    shapes = [(n, inp), (out, inp), (out,), (n, out), (out, inp)]  # x, W, b, dy, momentum
    case = [f32(rng.uniform(-1, 1, shape)) for shape in shapes]
    lib.ht_set_num_threads(1)
    expected = layer_products(ffi, lib, case)
    for threads in THREAD_COUNTS:
        lib.ht_set_num_threads(threads)
        for got, want in zip(layer_products(ffi, lib, case), expected):
            np.testing.assert_array_equal(got, want)


def replicated(a, copies):
    """`copies` copies of a one after the other, then a float32 NaN in every element of one
    more copy: a kernel that reads past its copies gives NaN."""
    return np.concatenate([a.ravel()] * copies + [np.full(a.size, np.nan, np.float32)])


def fused_step_with_copies(ffi, lib, case, copies, layout=replicated):
    """The fused SGD step and next forward, with x and x_next held as `copies` copies laid out
    by layout(batch, copies) (x_next another batch than x, of other rows)."""
    x, W, dy, buf, x_next = (a.copy() for a in case)
    (n, inp), out, n_next = x.shape, W.shape[0], x_next.shape[0]
    y = garbage((n_next, out))
    lib.ht_linear_bwd_weight_sgd_fwd(ptr(ffi, W), ptr(ffi, buf), ptr(ffi, dy),
                                     ptr(ffi, layout(x, copies)), n, inp, out, *SGD_ARGS, 0,
                                     ptr(ffi, y), ptr(ffi, layout(x_next, copies)), n_next, copies,
                                     ffi.NULL, ffi.NULL)
    return W, buf, y


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=batch_shapes(), n_next=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_the_fused_step_reads_one_copy_of_the_batches_per_thread(rt, shape, n_next, seed):
    """Whatever the number of copies and of threads: the bits of one copy on one thread."""
    ffi, lib = rt
    n, inp, out = shape
    rng = np.random.default_rng(seed)
    shapes = [(n, inp), (out, inp), (n, out), (out, inp), (n_next, inp)]  # x, W, dy, buf, x_next
    case = [f32(rng.uniform(-1, 1, shape)) for shape in shapes]
    lib.ht_set_num_threads(1)
    expected = fused_step_with_copies(ffi, lib, case, 1)
    for threads in [1, *THREAD_COUNTS]:
        lib.ht_set_num_threads(threads)
        for copies in {1, 2, 3, lib.ht_linear_sgd_fwd_copies(n, inp, out)}:
            for got, want in zip(fused_step_with_copies(ffi, lib, case, copies), expected):
                np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("out", [512, 1024])
def test_a_wide_first_layer_step_still_uses_the_threads(rt, out):
    """A layer of more groups of rows than a job is dealt in still shares them among the
    threads. Seen through the copies: a second copy of other values, which only a worker
    reads, changes the result (tried until a worker is seen: one may start late)."""
    ffi, lib = rt
    n, inp = 64, 784
    rng = np.random.default_rng(out)
    shapes = [(n, inp), (out, inp), (n, out), (out, inp), (n, inp)]  # x, W, dy, buf, x_next
    case = [f32(rng.uniform(-1, 1, shape)) for shape in shapes]
    lib.ht_set_num_threads(2)
    assert lib.ht_linear_sgd_fwd_copies(n, inp, out) == 2
    lib.ht_set_num_threads(1)
    alone = fused_step_with_copies(ffi, lib, case, 1)[0]
    lib.ht_set_num_threads(2)

    def other_second_copy(a, copies):
        return np.concatenate([a.ravel(), (a + 1).ravel()])

    for _ in range(50):
        shared = fused_step_with_copies(ffi, lib, case, 2, other_second_copy)[0]
        if not np.array_equal(shared, alone):
            break
    else:
        pytest.fail("no worker took part in 50 steps")
    lib.ht_set_num_threads(1)


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(1, 15), inp=st.integers(2048, 6000), out=st.integers(140, 260),
       seed=st.integers(0, 2**32 - 1))
def test_matrix_vector_products_do_not_depend_on_the_thread_count(rt, batch, inp, out, seed):
    """A batch of a few rows reads the weights from memory: the threads split their rows (each
    with at least 2**18 floats of them here), each output computed as on one thread."""
    ffi, lib = rt
    rng = np.random.default_rng(seed)
    x, W, b = (f32(rng.uniform(-1, 1, shape)) for shape in [(batch, inp), (out, inp), (out,)])

    def forward():
        y = garbage((batch, out))
        lib.ht_linear_fwd(ptr(ffi, y), ptr(ffi, x), ptr(ffi, W), ptr(ffi, b), batch, inp, out)
        return y

    lib.ht_set_num_threads(1)
    expected = forward()
    np.testing.assert_allclose(expected, x.astype(np.float64) @ W.T.astype(np.float64) + b,
                               rtol=1e-4, atol=1e-3)
    for threads in THREAD_COUNTS:
        lib.ht_set_num_threads(threads)
        np.testing.assert_array_equal(forward(), expected)
    lib.ht_set_num_threads(1)


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inp=st.integers(600, 3000), out=st.integers(110, 200), seed=st.integers(0, 2**32 - 1))
def test_a_matrix_vector_product_gives_the_same_bits_in_either_sweep(rt, inp, out, seed):
    """A batch of one sweeps weights of more than 2**16 floats in the order opposite to its
    last sweep over them (what that one left in cache first): every call, on any thread
    count, gives the same bits."""
    ffi, lib = rt
    rng = np.random.default_rng(seed)
    x, W, b = (f32(rng.uniform(-1, 1, shape)) for shape in [(1, inp), (out, inp), (out,)])

    def forward():
        y = garbage((1, out))
        lib.ht_linear_fwd(ptr(ffi, y), ptr(ffi, x), ptr(ffi, W), ptr(ffi, b), 1, inp, out)
        return y

    lib.ht_set_num_threads(1)
    expected = forward()
    np.testing.assert_allclose(expected, x.astype(np.float64) @ W.T.astype(np.float64) + b,
                               rtol=1e-4, atol=1e-3)
    for threads in [1, 1, *THREAD_COUNTS, *THREAD_COUNTS]:
        lib.ht_set_num_threads(threads)
        np.testing.assert_array_equal(forward(), expected)
    lib.ht_set_num_threads(1)


# ---- the data loader fills a batch on several threads, with the same result

@pytest.fixture(scope="module")
def loader_rt():
    """The native runtime declared with test_rng's cdef (its loader; its two test shims are not
    in this library and not called) and the thread setting."""
    return load_runtime(RUNTIME_CDEF + machine.RUNTIME_CDEF)


@pytest.fixture(scope="module")
def loader_data(tmp_path_factory):
    """300 random 6x5 images with labels, as an MNIST-format train split."""
    rng = np.random.default_rng(7)
    root = make_split(tmp_path_factory.mktemp("loader"),
                      rng.integers(0, 256, size=(300, 6, 5), dtype=np.uint8),
                      rng.integers(0, 256, size=300, dtype=np.uint8))
    return root


@contextlib.contextmanager
def loader_on_threads(rt, loader, threads):
    """`loader`'s C loader, with the runtime on `threads` threads; after it, one thread and the
    loader released."""
    c_loader = CLoader(rt, loader.c_spec())
    rt[1].ht_set_num_threads(threads)
    try:
        yield c_loader
    finally:
        rt[1].ht_set_num_threads(1)
        c_loader.release()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch_size=st.integers(1, 120), limit=st.integers(0, 300), shuffle=st.booleans(),
       drop_last=st.booleans(), threads=st.sampled_from(THREAD_COUNTS))
def test_loader_batches_do_not_depend_on_the_thread_count(loader_rt, loader_data, batch_size, limit,
                                                          shuffle, drop_last, threads):
    loader = MNIST(root=loader_data, batch_size=batch_size, shuffle=shuffle, seed=batch_size,
                   drop_last=drop_last, limit=limit)
    with loader_on_threads(loader_rt, loader, threads) as c_loader:
        for _ in range(2):
            assert_same_epoch(loader.batches_numpy(), c_loader.epoch())


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch_size=st.integers(1, 120), limit=st.integers(1, 300), copies=st.integers(1, 4),
       threads=st.sampled_from([1, *THREAD_COUNTS]))
def test_loader_copies_are_the_batch_each(loader_rt, loader_data, batch_size, limit, copies,
                                         threads):
    """ht_loader_fill_copies writes `copies` copies of ht_loader_fill's batch (the last one
    short), the targets once, and nothing past them."""
    ffi, lib = loader_rt
    loader = MNIST(root=loader_data, batch_size=batch_size, shuffle=True, seed=limit, limit=limit)
    with loader_on_threads(loader_rt, loader, threads) as c_loader:
        lib.ht_loader_begin_epoch(c_loader.struct)
        for batch, (x, y) in enumerate(loader.batches_numpy()):
            got_x = np.full((copies + 1) * batch_size * 30, np.nan, np.float32)
            got_y = np.full(batch_size + 1, -1, np.int64)
            rows = lib.ht_loader_fill_copies(c_loader.struct, batch,
                                             ffi.from_buffer("float[]", got_x),
                                             ffi.from_buffer("int64_t[]", got_y), copies)
            assert rows == len(y)
            expected = np.tile(x.ravel(), copies)
            np.testing.assert_array_equal(got_x[:expected.size].view(np.uint32),
                                          expected.view(np.uint32))
            assert np.isnan(got_x[expected.size:]).all()
            np.testing.assert_array_equal(got_y[:rows], y)
            assert (got_y[rows:] == -1).all()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch_size=st.integers(1, 70), limit=st.integers(1, 300), copies=st.integers(2, 4),
       data=st.data())
def test_each_threads_copies_hold_the_batches_it_reads(loader_rt, loader_data, batch_size, limit,
                                                       copies, data):
    """ht_batches' bookkeeping: the copies a thread readies hold the step's batch and the
    next, ht_loader's bits, whichever steps it missed before (a thread that took no part in a
    step readies nothing); ht_batches_next gives the next batch's targets and size. (Called
    from this thread, index 0, nothing is filled ahead: the workers' fills ahead are tested
    by the next test and pool_selftest.c.)"""
    ffi, lib = loader_rt
    loader = MNIST(root=loader_data, batch_size=batch_size, shuffle=True, seed=limit, limit=limit)
    c_loader = CLoader(loader_rt, loader.c_spec())  # before the epoch moves the seed on
    batches = list(loader.batches_numpy())
    pixels = batches[0][0][0].size
    buffers = [np.full((copies + 1) * batch_size * pixels, np.nan, np.float32) for _ in range(2)]
    y = [np.full(batch_size, -1, np.int64) for _ in range(2)]
    B = ffi.new("ht_batches *")

    def copy(batch, c):
        rows = len(batches[batch][1])
        return buffers[batch % 2][c * rows * pixels:(c + 1) * rows * pixels]

    def assert_holds(batch, c):
        np.testing.assert_array_equal(copy(batch, c).view(np.uint32),
                                      batches[batch][0].ravel().view(np.uint32))

    try:
        lib.ht_loader_begin_epoch(c_loader.struct)
        lib.ht_batches_begin(B, c_loader.struct, *(ffi.from_buffer("float[]", b) for b in buffers),
                             copies)
        assert lib.ht_batches_fill(B, 0, ffi.from_buffer("int64_t[]", y[0])) == len(batches[0][1])
        for c in range(copies):
            assert_holds(0, c)
        for step in range(len(batches) - 1):
            target = y[(step + 1) % 2]
            rows = lib.ht_batches_next(B, step + 1, ffi.from_buffer("int64_t[]", target))
            assert rows == len(batches[step + 1][1])
            np.testing.assert_array_equal(target[:rows], batches[step + 1][1])
            for c in data.draw(st.sets(st.integers(0, copies - 1)), label=f"threads of {step}"):
                lib.ht_batches_ready(B, c)
                assert_holds(step, c)
                assert_holds(step + 1, c)
        for b in buffers:  # nothing written past the copies
            assert np.isnan(b[copies * batch_size * pixels:]).all()
    finally:
        c_loader.release()


@pytest.fixture(scope="module")
def pipeline_rt():
    """The native runtime with its kernels, loader and thread setting declared."""
    kernels = KERNELS_CDEF.replace("const char *ht_last_error(void);", "")
    return load_runtime(RUNTIME_CDEF + kernels + machine.RUNTIME_CDEF)


@pytest.fixture(scope="module")
def mnist_sized_data(tmp_path_factory):
    """300 random 28x28 images with labels: a first layer of 784 inputs is worth threads."""
    rng = np.random.default_rng(8)
    return make_split(tmp_path_factory.mktemp("mnist_sized"),
                      rng.integers(0, 256, size=(300, 28, 28), dtype=np.uint8),
                      rng.integers(0, 10, size=300, dtype=np.uint8))


def pipelined_first_layer(rt, loader, out, threads, hooked, seed):
    """A pipelined loop's first layer over two epochs of `loader` (random output gradients):
    its SGD step and the next batch's outputs each step, through ht_batches and the fused
    step's ready hook (`hooked`) or ht_loader_fill and one copy. W, buf, then each step's
    next outputs and targets."""
    ffi, lib = rt
    rng = np.random.default_rng(seed)
    size, inp = loader.batch_size, 784
    W, buf = f32(rng.uniform(-0.1, 0.1, (out, inp))), f32(rng.uniform(-0.1, 0.1, (out, inp)))
    with loader_on_threads(rt, loader, threads) as c_loader:
        copies = lib.ht_linear_sgd_fwd_copies(size, inp, out) if hooked else 1
        xs = [np.full(copies * size * inp, np.nan, np.float32) for _ in range(2)]
        ys = [np.full(size, -1, np.int64) for _ in range(2)]
        x_ptr = [ffi.from_buffer("float[]", x) for x in xs]
        y_ptr = [ffi.from_buffer("int64_t[]", y) for y in ys]
        B = ffi.new("ht_batches *")
        seen = []
        for epoch in range(2):
            lib.ht_loader_begin_epoch(c_loader.struct)
            if hooked:
                lib.ht_batches_begin(B, c_loader.struct, *x_ptr, copies)
                rows = lib.ht_batches_fill(B, 0, y_ptr[0])
            else:
                rows = lib.ht_loader_fill(c_loader.struct, 0, x_ptr[0], y_ptr[0])
            for step in range(lib.ht_loader_len(c_loader.struct) - 1):
                now, after = step % 2, (step + 1) % 2
                dy = f32(rng.uniform(-1, 1, (rows, out)))
                y_next = garbage((size, out))
                if hooked:
                    rows_next = lib.ht_batches_next(B, step + 1, y_ptr[after])
                    hook = (lib.ht_batches_ready, B)
                else:
                    rows_next = lib.ht_loader_fill(c_loader.struct, step + 1, x_ptr[after],
                                                   y_ptr[after])
                    hook = (ffi.NULL, ffi.NULL)
                lib.ht_linear_bwd_weight_sgd_fwd(
                    ptr(ffi, W), ptr(ffi, buf), ptr(ffi, dy), x_ptr[now], rows, inp, out,
                    *SGD_ARGS, int(epoch + step == 0), ptr(ffi, y_next), x_ptr[after],
                    rows_next, copies, *hook)
                seen += [y_next[:rows_next].copy(), ys[after][:rows_next].copy()]
                rows = rows_next
        lib.ht_settle()
        return [W, buf, *seen]


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch_size=st.integers(16, 80), limit=st.integers(40, 300), out=st.integers(20, 70),
       seed=st.integers(0, 2**32 - 1))
def test_the_pipelined_first_layer_fills_copies_on_its_threads(pipeline_rt, mnist_sized_data,
                                                              batch_size, limit, out, seed):
    """The fused step with ht_batches' hook, the workers filling their copies a step ahead
    after their part of a step: the bits of one copy filled before each step on one thread,
    on every thread count."""
    loader = MNIST(root=mnist_sized_data, batch_size=batch_size, shuffle=True, seed=seed,
                   limit=limit)
    expected = pipelined_first_layer(pipeline_rt, loader, out, 1, False, seed)
    for threads in [1, *THREAD_COUNTS]:
        got = pipelined_first_layer(pipeline_rt, loader, out, threads, True, seed)
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)


# ---- the setting reaches every compiled model

def train_mnist_mlp(batch_size, *thread_counts, limit=None):
    """The demo's model trained by one compiled loop, a short epoch (20 batches, or `limit`
    samples) at each of `thread_counts` threads in turn: its parameters, and the last thread
    count its compiled code was given."""
    from hytorch.data import MNIST
    from hytorch.examples.mnist_mlp import Net, train
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    loader = MNIST(train=True, batch_size=batch_size, shuffle=True, seed=3,
                   limit=limit or 20 * batch_size)
    trainer = hytorch.stage(train, model, optimizer, loader, int, int)
    for threads in thread_counts:
        hytorch.set_num_threads(threads)
        trainer(model, optimizer, loader, 1, 10**9)
        assert trainer._lib.ht_get_num_threads() == threads
    return [p.detach().clone() for p in model.parameters()], trainer._lib.ht_get_num_threads()


def test_a_model_trains_to_the_same_bits_as_its_thread_count_changes(fresh_setting, capfd):
    """One compiled training loop called at 1, 3, 2 and 1 threads (its batches' copies for
    each thread grow between the calls; the last batch short) against the same calls on one
    thread."""
    one, _ = train_mnist_mlp(64, 1, 1, 1, 1, limit=10 * 64 + 17)
    changing, _ = train_mnist_mlp(64, 1, 3, 2, 1, limit=10 * 64 + 17)
    for a, b in zip(one, changing):
        assert torch.equal(a, b)


def test_a_model_trains_to_the_same_bits_on_two_threads(fresh_setting, capfd):
    one, seen_one = train_mnist_mlp(64, 1)
    two, seen_two = train_mnist_mlp(64, 2)
    other, seen_other = train_mnist_mlp(32, 3)  # another model: its own copy of the runtime
    assert (seen_one, seen_two, seen_other) == (1, 2, 3)
    for a, b in zip(one, two):
        assert torch.equal(a, b)


# ---- the workers' life: signals, a forked child, an unloaded library

LIFE_SCRIPT = """
import os, shutil, sys, time
import numpy as np
sys.path.insert(0, {tests!r})
from c_harness import KERNELS_CDEF, _build, ptr
from hytorch.machine import RUNTIME_CDEF
import cffi

def product(lib, ffi):
    x, W = np.ones((64, 784), np.float32), np.ones((50, 784), np.float32)
    y = np.zeros((64, 50), np.float32)
    lib.ht_set_num_threads(2)
    lib.ht_linear_fwd(ptr(ffi, y), ptr(ffi, x), ptr(ffi, W), ffi.NULL, 64, 784, 50)
    assert (y == 784).all()

def workers_block_sigint():  # every runtime worker (once it runs): Ctrl-C must not land there
    for _ in range(1000):
        masks = []
        for task in os.listdir("/proc/self/task"):
            status = open(f"/proc/self/task/{{task}}/status").read()
            if "Name:\thytorch-worker" in status:
                blocked = int(status.split("SigBlk:")[1].split()[0], 16)
                masks.append(blocked >> 1 & 1)  # SIGINT is signal 2
        if masks:
            return all(masks)
        time.sleep(0.01)
    return False

ffi = cffi.FFI()
ffi.cdef(KERNELS_CDEF + RUNTIME_CDEF)
for copy in range(3):  # a private copy of the library each time, so that dlclose unloads it
    path = os.path.join({tmp!r}, f"runtime{{copy}}.so")
    shutil.copy(_build(()), path)
    lib = ffi.dlopen(path)
    product(lib, ffi)
    assert sys.platform != "linux" or workers_block_sigint()
    if copy == 1:  # a child forked after the workers started has none: it must not wait for them
        pid = os.fork()
        if pid == 0:
            product(lib, ffi)
            sys.exit(0)  # and the runtime's exit handlers run
        assert os.waitpid(pid, 0)[1] == 0
    ffi.dlclose(lib)  # the workers were spinning in its code: they must be stopped first
print("done")
"""


def test_workers_block_signals_and_survive_fork_and_unloading(tmp_path):
    """Runs in a child process: a hang or a crash there fails this test, not the test run."""
    script = LIFE_SCRIPT.format(tests=str(RUNTIME_DIR.parent / "tests"), tmp=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and run.stdout == "done\n", run.stdout + run.stderr
