"""hytorch.data.ArrayLoader in compiled training loops: C (c_runtime/ht_data.c) reads the same
batches in the same order as the eager loader, the arrays cross into the program as they are,
and a loop staged with it trains as eager PyTorch does, step for step."""
import contextlib
import copy
import os
import sys
import tempfile
import types

import hy
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import hytorch
from hytorch import machine
from hytorch.data import ArrayLoader, DataError
from c_harness import load_runtime
from test_rng import RUNTIME_CDEF

HT_INT64, HT_FLOAT32 = 1, 2
LOSS_RTOL, WEIGHT_ATOL = 1e-4, 2e-5

# The staged loops under test: each prints every step's loss, in full, as Python prints floats.
STAGED_SOURCE = """
(require hytorch [defstaged])
(import torch.nn.functional :as F)

(defstaged regression-steps [model optimizer loader epochs]
  (for [epoch (range epochs)]
    (for [[i [data target]] (enumerate loader)]
      (.zero-grad optimizer)
      (setv loss (F.mse-loss (model data) target))
      (.backward loss)
      (.step optimizer)
      (print (.format "loss {}" (.item loss)))))
  (len loader))

(defstaged classification-steps [model optimizer loader epochs]
  (for [epoch (range epochs)]
    (for [[i [data target]] (enumerate loader)]
      (.zero-grad optimizer)
      (setv loss (F.cross-entropy (model data) target))
      (.backward loss)
      (.step optimizer)
      (print (.format "loss {}" (.item loss)))))
  (len loader))
"""


def staged_functions():
    """STAGED_SOURCE's defstaged functions, in a module of their own."""
    module = types.ModuleType("array_loader_steps")
    for form in hy.read_many(STAGED_SOURCE):
        hy.eval(form, module=module)
    return module


STAGED = staged_functions()


class Net(torch.nn.Module):
    """Flatten each sample, Linear, ReLU, Linear."""

    def __init__(self, features, outputs):
        super().__init__()
        self.features = features
        self.fc1 = torch.nn.Linear(features, 6)
        self.fc2 = torch.nn.Linear(6, outputs)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x.view(-1, self.features))))


def eager_steps(model, optimizer, loader, epochs, loss_fn):
    """The losses of plain PyTorch training over the eager loader's batches."""
    losses = []
    for _ in range(epochs):
        for data, target in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(data), target)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


@contextlib.contextmanager
def captured_stdout():
    """What is written to file descriptor 1 inside the block (compiled code prints there)."""
    lines = []
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield lines
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode().splitlines())


@contextlib.contextmanager
def threads(n):
    saved = machine._chosen
    hytorch.set_num_threads(n)
    try:
        yield
    finally:
        machine._chosen = saved


def data_set(count, sample_shape, classes, seed):
    """Float64 inputs as NumPy makes them; int class targets [count] when `classes`, else
    float targets [count, 1] = a linear function of the inputs plus noise."""
    rng = np.random.default_rng(seed)
    inputs = rng.standard_normal((count, *sample_shape))
    flat = inputs.reshape(count, -1)
    if classes:
        return inputs, rng.integers(0, classes, count)
    weights = rng.standard_normal((flat.shape[1], 1))
    return inputs, flat @ weights + 0.1 * rng.standard_normal((count, 1))


def train_both(inputs, targets, classes, batch_size, shuffle, drop_last, epochs=2, seed=0):
    """(staged losses, eager losses, staged model, eager model) of the same training."""
    features = int(np.prod(inputs.shape[1:]))
    torch.manual_seed(seed)
    model = Net(features, classes or 1)
    twin = copy.deepcopy(model)
    loaders = [ArrayLoader(inputs, targets, batch_size=batch_size, shuffle=shuffle, seed=seed,
                           drop_last=drop_last) for _ in range(2)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.5) for m in (model, twin)]
    steps = STAGED.classification_steps if classes else STAGED.regression_steps
    trainer = hytorch.stage(steps, model, optimizers[0], loaders[0], int)
    with captured_stdout() as lines:
        batches = trainer(model, optimizers[0], loaders[0], epochs)
    staged = [float(line.split()[1]) for line in lines]
    assert batches == len(loaders[1])
    loss_fn = F.cross_entropy if classes else F.mse_loss
    eager = eager_steps(twin, optimizers[1], loaders[1], epochs, loss_fn)
    assert loaders[0].rng.state == loaders[1].rng.state, "the shuffle continues from C's state"
    return staged, eager, model, twin


def assert_same_training(staged, eager, model, twin):
    assert len(staged) == len(eager)
    np.testing.assert_allclose(staged, eager, rtol=LOSS_RTOL, atol=1e-6)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(p, q, atol=WEIGHT_ATOL), (p - q).abs().max()


# ---------------------------------------------------------------------------------------------
# Training, staged against eager

@pytest.mark.parametrize("thread_count", [1, 2])
@settings(max_examples=8, deadline=None, derandomize=True)
@given(count=st.integers(1, 40), sample_shape=st.sampled_from([(1,), (3,), (2, 3)]),
       classes=st.sampled_from([0, 3]), batch_size=st.integers(1, 20), shuffle=st.booleans(),
       drop_last=st.booleans())
def test_staged_training_matches_eager_step_for_step(thread_count, count, sample_shape, classes,
                                                       batch_size, shuffle, drop_last):
    inputs, targets = data_set(count, sample_shape, classes, seed=count)
    with threads(thread_count):
        staged, eager, model, twin = train_both(inputs, targets, classes, batch_size, shuffle,
                                                drop_last)
    assert_same_training(staged, eager, model, twin)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("classes", [0, 4])
def test_a_ragged_last_batch(shuffle, drop_last, classes):
    inputs, targets = data_set(23, (5,), classes, seed=1)        # batches of 8, 8 and 7
    staged, eager, model, twin = train_both(inputs, targets, classes, 8, shuffle, drop_last)
    assert len(staged) == 2 * (2 if drop_last else 3)
    assert_same_training(staged, eager, model, twin)


def test_tensors_train_as_arrays_do():
    inputs, targets = data_set(30, (4,), 0, seed=2)
    as_arrays = train_both(inputs, targets, 0, 7, True, False)
    as_tensors = train_both(torch.from_numpy(inputs).float(), torch.from_numpy(targets).float(),
                            0, 7, True, False)
    assert as_arrays[0] == as_tensors[0]
    assert_same_training(*as_tensors)


def test_the_loader_of_a_call_is_read_and_a_loader_of_other_batches_refused():
    inputs, targets = data_set(12, (3,), 0, seed=3)
    torch.manual_seed(0)
    model = Net(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = ArrayLoader(inputs, targets, batch_size=4)
    trainer = hytorch.stage(STAGED.regression_steps, model, optimizer, loader, int)
    other_data = ArrayLoader(inputs[::-1].copy(), targets[::-1].copy(), batch_size=4)
    twin = copy.deepcopy(model)
    with captured_stdout():
        trainer(model, optimizer, other_data, 1)
    eager_steps(twin, torch.optim.SGD(twin.parameters(), lr=0.05), other_data, 1, F.mse_loss)
    assert torch.allclose(model.fc1.weight, twin.fc1.weight, atol=WEIGHT_ATOL)
    for other, message in [
        (ArrayLoader(inputs, targets, batch_size=3), "gives batches of 3 samples: inputs [3] "
                                                     "float32, targets [1] float32; the program "
                                                     "was staged for batches of 4"),
        (ArrayLoader(inputs, targets[:, 0], batch_size=4), "targets [] float32"),
        (ArrayLoader(inputs, targets.astype(int), batch_size=4), "targets [1] int64"),
    ]:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            trainer(model, optimizer, other, 1)


def test_printed_ir_names_the_arrays_and_needs_a_loader_to_run():
    inputs, targets = data_set(10, (2, 3), 5, seed=4)
    model = Net(6, 5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = ArrayLoader(inputs, targets, batch_size=4)
    text = str(hytorch.lms_compile(STAGED.classification_steps, model, optimizer, loader, int))
    assert "(loader (arrays (2 3) () int64 4))" in text
    again = hytorch.compile_ir(text, object, object, object, int)
    with pytest.raises(ValueError, match="no ArrayLoader is bound to loader"):
        again(None, None, None, 1)


def test_integer_inputs_are_refused_when_staged():
    loader = ArrayLoader(np.arange(12).reshape(6, 2), np.zeros(6), batch_size=2)
    model = Net(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with pytest.raises(DataError, match="inputs hold int64 values; a compiled training loop "
                                        "reads float32 inputs"):
        hytorch.lms_compile(STAGED.regression_steps, model, optimizer, loader, int)


# ---------------------------------------------------------------------------------------------
# What crosses into the compiled program

@pytest.mark.parametrize("make", [np.ascontiguousarray, torch.from_numpy])
def test_contiguous_float32_inputs_and_targets_cross_without_a_copy(make):
    inputs = make(np.random.default_rng(0).standard_normal((9, 2, 2)).astype(np.float32))
    targets = make(np.arange(9, dtype=np.int64))
    spec = ArrayLoader(inputs, targets, batch_size=2).c_spec()
    assert np.shares_memory(spec.images, np.asarray(inputs))
    assert np.shares_memory(spec.labels, np.asarray(targets))
    assert spec.images.flags.c_contiguous and (spec.rows, spec.cols) == (1, 4)


@pytest.mark.parametrize("inputs", [
    np.zeros((6, 3)),                                   # float64
    np.zeros((3, 6), dtype=np.float32).T,               # not contiguous
    torch.zeros(6, 3, dtype=torch.float16),
    torch.zeros(6, 3, dtype=torch.bfloat16),
    torch.zeros(3, 6).t(),
])
def test_other_inputs_are_copied_once_as_float32(inputs):
    loader = ArrayLoader(inputs, np.zeros(6, dtype=np.int64))
    spec = loader.c_spec()
    assert spec.images.dtype == np.float32 and spec.images.flags.c_contiguous
    assert spec.images.shape == (6, 3)
    assert spec.images is loader.inputs, "copied once, when the loader is made"


@pytest.mark.parametrize("inputs, targets, message", [
    (np.zeros((3, 2)), np.zeros(4), "inputs hold 3 samples but targets hold 4"),
    (np.zeros((0, 2)), np.zeros(0), r"inputs hold no samples \(shape \[0, 2\]\)"),
    (np.zeros((3, 0)), np.zeros(3), r"inputs hold empty samples \(shape \[3, 0\]\)"),
    (np.zeros((3, 2)), np.zeros((3, 0)), "targets hold empty samples"),
    (np.zeros((3, 2)), np.array(["a", "b", "c"]), "targets must hold numbers"),
    (np.zeros((3, 2), dtype=complex), np.zeros(3), "inputs must hold numbers"),
    (torch.zeros(3, 2, dtype=torch.complex64), np.zeros(3), "inputs must hold numbers"),
    ([[1.0], [2.0, 3.0]], [0, 1], "inputs are not an array"),
])
def test_bad_arrays_are_a_data_error_naming_the_argument(inputs, targets, message):
    with pytest.raises(DataError, match=message):
        ArrayLoader(inputs, targets)


# ---------------------------------------------------------------------------------------------
# The C loader over arrays, against the eager batches, bit for bit

@pytest.fixture(scope="module")
def c():
    """The runtime declared with test_rng's cdef (its loader; its two test shims are not in
    this library and not called) and the thread setting, as tests/test_threads.py loads it."""
    return load_runtime(RUNTIME_CDEF + machine.RUNTIME_CDEF)


def c_epoch(c, loader, struct):
    """One epoch of the C loader `struct` (bound to `loader.c_spec()`), as NumPy batches."""
    ffi, lib = c
    lib.ht_loader_begin_epoch(struct)
    input_shape, target_shape = loader.inputs.shape[1:], loader.targets.shape[1:]
    for batch in range(lib.ht_loader_len(struct)):
        x = np.full((loader.batch_size, *input_shape), np.nan, dtype=np.float32)
        y = np.full((loader.batch_size, *target_shape), -1, dtype=loader.targets.dtype)
        n = lib.ht_loader_fill(struct, batch, ffi.from_buffer("float[]", x),
                               ffi.from_buffer("char[]", y))
        assert np.isnan(x[n:]).all() and (y[n:] == -1).all(), "nothing past the batch's rows"
        yield x[:n], y[:n]


def c_loader(c, loader):
    ffi, lib = c
    spec = loader.c_spec()
    s = ffi.new("ht_loader *")
    s.images_type = HT_FLOAT32
    s.labels_type = HT_INT64 if spec.labels.dtype == np.int64 else HT_FLOAT32
    s.target_size = int(np.prod(spec.labels.shape[1:]))
    keep = [ffi.from_buffer("char[]", spec.images), ffi.from_buffer("char[]", spec.labels)]
    s.images, s.labels = keep
    s.count, s.rows, s.cols, s.batch_size = spec.count, spec.rows, spec.cols, spec.batch_size
    s.shuffle, s.drop_last, s.mean, s.std, s.rng = (spec.shuffle, spec.drop_last, spec.mean,
                                                    spec.std, spec.rng_state)
    assert lib.ht_loader_init(s) == 0, ffi.string(lib.ht_last_error()).decode()
    return s, keep


@settings(max_examples=60, deadline=None, derandomize=True)
@given(count=st.integers(1, 80), sample_shape=st.lists(st.integers(1, 4), max_size=2),
       target_shape=st.lists(st.integers(1, 3), max_size=2), integer_targets=st.booleans(),
       batch_size=st.integers(1, 40), shuffle=st.booleans(), drop_last=st.booleans(),
       seed=st.integers(0, 2**64 - 1), threads=st.sampled_from([1, 2, 3]))
def test_c_batches_equal_eager_batches(c, count, sample_shape, target_shape, integer_targets,
                                       batch_size, shuffle, drop_last, seed, threads):
    """Also when a batch is filled by several threads (8 samples or more each)."""
    rng = np.random.default_rng(count)
    inputs = rng.standard_normal((count, *sample_shape)).astype(np.float32)
    targets = (rng.integers(-5, 5, (count, *target_shape)) if integer_targets
               else rng.standard_normal((count, *target_shape)).astype(np.float32))
    loader = ArrayLoader(inputs, targets, batch_size, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
    twin = ArrayLoader(inputs, targets, batch_size, shuffle=shuffle, seed=seed,
                       drop_last=drop_last)
    struct, keep = c_loader(c, twin)
    assert c[1].ht_loader_len(struct) == len(loader)
    c[1].ht_set_num_threads(threads)
    try:
        for _ in range(2):
            expected, got = list(loader.batches_numpy()), list(c_epoch(c, twin, struct))
            assert len(got) == len(expected)
            for (ex, ey), (x, y) in zip(expected, got):
                np.testing.assert_array_equal(x.view(np.uint32), ex.view(np.uint32))
                np.testing.assert_array_equal(y, ey)
            assert struct.rng == loader.rng.state
    finally:
        c[1].ht_set_num_threads(1)
        c[1].ht_loader_release(struct)


@pytest.mark.parametrize("field, value, message", [
    ("images_type", HT_INT64, "data loader: inputs of element type 1"),
    ("labels_type", 7, "data loader: targets of element type 7"),
    ("target_size", 0, "data loader: targets of 0 values a sample"),
])
def test_c_init_rejects_bad_element_types(c, field, value, message):
    ffi, lib = c
    struct, keep = c_loader(c, ArrayLoader(np.zeros((4, 2)), np.zeros(4), batch_size=2))
    lib.ht_loader_release(struct)
    setattr(struct, field, value)
    assert lib.ht_loader_init(struct) == 1
    assert message in ffi.string(lib.ht_last_error()).decode()


@pytest.mark.parametrize("spec", ["(arrays (3) (1) float64 4)", "(arrays (0) (1) float32 4)",
                                  "(arrays (3) (1) float32)", "(arrays 3 (1) float32 4)"])
def test_a_bad_array_loader_in_ir_is_an_ir_error(spec):
    text = f"(def f (in1) (begin (begin (let x0 (loader {spec}) (let x1 (len x0) x1)))))"
    with pytest.raises(hytorch.IRError, match="an array loader is \\(arrays \\(INPUT-SHAPE\\)"):
        hytorch.compile_ir(text, object)
