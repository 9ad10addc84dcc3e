"""hytorch.data.ArrayLoader in eager mode: the batches of torch's DataLoader over a
TensorDataset (in the order of hytorch's own shuffle), as float32 / int64 tensors."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from hytorch.data import ArrayLoader
from hytorch.rng import SplitMix64


def torch_batches(inputs, targets, batch_size, drop_last, order=None):
    """What torch's DataLoader gives over the same samples (in `order` when given)."""
    dataset = torch.utils.data.TensorDataset(torch.as_tensor(inputs), torch.as_tensor(targets))
    sampler = None if order is None else list(order)
    return list(torch.utils.data.DataLoader(dataset, batch_size=batch_size, drop_last=drop_last,
                                            sampler=sampler))


shapes = st.tuples(st.integers(1, 23), st.lists(st.integers(1, 3), max_size=2))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(shape=shapes, batch_size=st.integers(1, 8), drop_last=st.booleans(),
       shuffle=st.booleans(), seed=st.integers(0, 2**64 - 1), integer_targets=st.booleans())
def test_batches_are_torchs_in_hytorchs_order(shape, batch_size, drop_last, shuffle, seed,
                                               integer_targets):
    count, sample = shape
    rng = np.random.default_rng(count)
    inputs = rng.standard_normal((count, *sample))                 # float64, as NumPy makes it
    targets = (rng.integers(0, 5, count) if integer_targets
               else rng.standard_normal((count, 2)).astype(np.float32))
    loader = ArrayLoader(inputs, targets, batch_size=batch_size, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
    order = np.arange(count)
    if shuffle:
        SplitMix64(seed).shuffle(order)
    expected = torch_batches(inputs.astype(np.float32),
                             targets.astype(np.int64 if integer_targets else np.float32),
                             batch_size, drop_last, order)
    got = list(loader)
    assert len(got) == len(loader) == len(expected)
    for (x, y), (ex, ey) in zip(got, expected):
        assert x.dtype == torch.float32 and y.dtype == ey.dtype
        assert torch.equal(x, ex) and torch.equal(y, ey)


def test_each_epoch_draws_a_fresh_permutation_and_the_seed_repeats_them():
    xs, ys = np.arange(40.0).reshape(20, 2), np.arange(20)
    first = [torch.cat([y for _, y in ArrayLoader(xs, ys, 3, shuffle=True, seed=7)]) for _ in "ab"]
    loader = ArrayLoader(xs, ys, 3, shuffle=True, seed=7)
    epochs = [torch.cat([y for _, y in loader]) for _ in "ab"]
    assert torch.equal(epochs[0], first[0]) and not torch.equal(epochs[0], epochs[1])
    assert sorted(epochs[1].tolist()) == list(range(20))


def test_tensors_and_lists_are_taken_and_batches_do_not_alias_them():
    xs = torch.arange(8.0, dtype=torch.float64).reshape(4, 2)
    loader = ArrayLoader(xs, [[1], [2], [3], [4]], batch_size=2)
    (x, y), _ = list(loader)
    assert x.dtype == torch.float32 and y.tolist() == [[1], [2]]
    x += 100
    assert xs[0, 0] == 0 and next(iter(loader))[0][0, 0] == 0


@pytest.mark.parametrize("inputs, targets, message", [
    (np.zeros((3, 2)), np.zeros(4), "inputs hold 3 samples but targets hold 4"),
    (np.zeros((3, 2)), np.array(["a", "b", "c"]), "targets must hold numbers"),
    (np.float64(1.0), np.zeros(1), "need a first dimension"),
])
def test_bad_data_is_a_clear_error(inputs, targets, message):
    with pytest.raises(ValueError, match=message):
        ArrayLoader(inputs, targets)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True])
def test_a_bad_batch_size_is_a_clear_error(batch_size):
    with pytest.raises(ValueError, match="batch_size must be an integer of at least 1"):
        ArrayLoader(np.zeros((2, 1)), np.zeros(2), batch_size=batch_size)
