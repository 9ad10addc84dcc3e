"""What crosses between torch objects and a compiled program's state at each call
(hytorch/torch_bridge.py): optimizer state written back in place, as torch's own step writes
it, and read again only when something else changed it."""
import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import hytorch
from hytorch import torch_bridge


def step(model, optimizer, x, y):
    optimizer.zero_grad()
    loss = F.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def sgd_twins(model, momentum):
    """A copy of `model`, and an SGD (lr 0.1) for each of the two."""
    twin = copy.deepcopy(model)
    return (twin, torch.optim.SGD(model.parameters(), lr=0.1, momentum=momentum),
            torch.optim.SGD(twin.parameters(), lr=0.1, momentum=momentum))


@settings(max_examples=12, deadline=None, derandomize=True)
@given(schedule=st.lists(st.booleans(), min_size=2, max_size=8), momentum=st.sampled_from([0.0, 0.9]))
def test_compiled_and_eager_steps_alternate_on_one_optimizer_state(schedule, momentum):
    """`schedule`: for each step, compiled (True) or eager (False); the twin steps eagerly
    throughout. The momentum buffer torch holds is the one object it was, updated in place."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2))
    twin = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=momentum)
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=momentum)
    x, y = torch.randn(5, 4), torch.randn(5, 2)
    compiled = hytorch.stage(step, model, optimizer, x, y)
    buffers = {}
    for use_compiled in schedule:
        loss = (compiled if use_compiled else step)(model, optimizer, x, y)
        expected = step(twin, twin_optimizer, x, y)
        assert abs(loss - expected) <= 1e-5 * max(1.0, abs(expected))
        for p, q in zip(model.parameters(), twin.parameters()):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)
            buffer = optimizer.state[p].get("momentum_buffer")
            assert (buffer is None) == (twin_optimizer.state[q].get("momentum_buffer") is None)
            if buffer is not None:
                torch.testing.assert_close(buffer, twin_optimizer.state[q]["momentum_buffer"],
                                           rtol=1e-5, atol=1e-6)
                assert buffers.setdefault(id(p), buffer) is buffer, "the same buffer, in place"


@pytest.mark.parametrize("width", [3, 200])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_parameters_laid_out_any_way_are_trained_in_place(width, momentum):
    """A weight that is a transpose (not contiguous; 200 x 200 past the size torch's copy_
    runs on its threads) is read and written back through its strides, as torch's step
    writes it; its writing back once failed after the C code had trained, losing the call."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.Tanh(),
                                torch.nn.Linear(width, 2))
    model[0].weight = torch.nn.Parameter(torch.randn(width, width).t() / width)
    twin, optimizer, twin_optimizer = sgd_twins(model, momentum)
    assert not model[0].weight.is_contiguous() and not twin[0].weight.is_contiguous()
    x, y = torch.randn(5, width), torch.randn(5, 2)
    compiled = hytorch.stage(step, model, optimizer, x, y)
    weight = model[0].weight
    for _ in range(3):
        compiled(model, optimizer, x, y)
        step(twin, twin_optimizer, x, y)
    assert model[0].weight is weight and weight.stride() == twin[0].weight.stride()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("width", [2, 200])
def test_written_back_values_count_as_in_place_changes_for_autograd(width):
    """A write-back counts as an in-place change, also where it goes through NumPy (a weight of
    more than 32768 elements, 200x200 here; torch's copy_ would start its OpenMP threads): a
    graph that saved the weight before a compiled step refuses to backpropagate after it, as
    after torch's own step, and the momentum buffer's version moves too."""
    assert (width * width > torch_bridge._TORCH_PARALLEL_COPY) == (width == 200)
    torch.manual_seed(0)
    model = torch.nn.Linear(width, width)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    x, y = torch.randn(4, width), torch.randn(4, width)
    compiled = hytorch.stage(step, model, optimizer, x, y)
    compiled(model, optimizer, x, y)
    buffer = optimizer.state[model.weight]["momentum_buffer"]
    versions = model.weight._version, buffer._version
    stale = (model(x.clone().requires_grad_()) ** 2).sum()   # saves the weight
    compiled(model, optimizer, x, y)
    assert model.weight._version > versions[0] and buffer._version > versions[1]
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        stale.backward()


def test_only_a_call_that_writes_back_holds_back_ctrl_c(monkeypatch):
    """Ctrl-C is held back while values cross for a training step (an interrupt then could lose
    trained weights), not for an inference function of a model's weights (nothing comes back:
    its calls skip the two signal-mask system calls); each computes what torch computes."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(5, 4), torch.randn(5, 2)
    infer = hytorch.stage(lambda m, x: m(x), model, x)
    train = hytorch.stage(step, model, optimizer, x, y)
    import signal
    masks = []
    real_mask = signal.pthread_sigmask
    monkeypatch.setattr(signal, "pthread_sigmask", lambda *a: masks.append(a) or real_mask(*a))
    torch.testing.assert_close(infer(model, x), model(x).detach(), rtol=1e-5, atol=1e-6)
    assert masks == []
    twin = copy.deepcopy(model)
    loss = train(model, optimizer, x, y)
    assert len(masks) == 2
    expected = step(twin, torch.optim.SGD(twin.parameters(), lr=0.1), x, y)
    assert abs(loss - expected) <= 1e-5 * max(1.0, abs(expected))


def test_a_state_tensor_is_a_live_view_that_keeps_the_state_alive():
    import gc
    import numpy as np
    torch.manual_seed(0)
    model = torch.nn.Linear(300, 200)
    # transposed: copied into the state and trained there (one laid out as the state's is
    # trained in its own memory)
    model.weight = torch.nn.Parameter(torch.randn(300, 200).t() / 300)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(5, 300), torch.randn(5, 200)
    compiled = hytorch.stage(step, model, optimizer, x, y)
    (name,) = [s["sym"] for s in compiled.slots
               if s["role"].name == "TENSOR" and s["shape"] == [200, 300]]
    weights = compiled.tensor(name)
    compiled(model, optimizer, x, y)
    assert np.array_equal(weights, model.weight.detach().numpy())   # live: the trained values
    trained = weights.copy()
    del compiled
    gc.collect()
    junk = [np.full(60_000, 7.0, np.float32) for _ in range(50)]   # (reuses freed memory)
    assert np.array_equal(weights, trained) and len(junk) == 50   # its state was not freed


def test_an_inference_call_reads_the_weights_as_they_are_now():
    """Changes torch does not count (`.data`, NumPy) are seen too: the C code reads the
    tensors' own memory, or a copy made at the call (a transposed weight)."""
    import gc
    import numpy as np
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    x = torch.randn(5, 3)
    f = hytorch.stage(lambda m, x: m(x), model, hytorch.TensorType([5, 3]))

    def agrees():
        with torch.no_grad():
            torch.testing.assert_close(torch.as_tensor(f(model, x)), model(x))

    agrees()
    model[0].weight.data.mul_(-2.0)               # _version stays as it was
    agrees()
    model[2].bias.detach().numpy()[:] = np.float32(5.0)
    agrees()
    model[0].weight = torch.nn.Parameter(torch.randn(3, 4).t())   # laid out otherwise: copied
    agrees()
    model[0].weight.data.zero_()
    agrees()
    model[2].weight = torch.nn.Parameter(torch.randn(2, 4))   # the bound one dies,
    gc.collect()
    junk = [torch.full((2, 4), 7.0) for _ in range(100)]        # its memory taken again
    agrees()
    model[2].weight.data = model[2].weight.data[:1]      # the same memory, fewer elements
    with pytest.raises(ValueError, match="has 4 elements; the program was staged with 8"):
        f(model, x)
    weights = f.tensor([s["sym"] for s in f.slots if s.get("shape") == [2, 4]][0])
    assert weights.shape == (2, 4) and len(junk) == 100   # the state's own memory


def test_a_training_call_starts_from_the_weights_as_they_are_now():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    twin, optimizer, twin_optimizer = sgd_twins(model, 0.9)
    x, y = torch.randn(4, 3), torch.randn(4, 2)
    compiled = hytorch.stage(step, model, optimizer, x, y)
    def replace_buffer(m, o):
        o.state[m.weight]["momentum_buffer"] = torch.full_like(m.weight, 0.25)   # a new object

    for edit in (lambda m, o: m.weight.data.mul_(0.5),    # changes torch does not count
                 lambda m, o: o.state[m.weight]["momentum_buffer"].data.fill_(0.25),
                 replace_buffer):
        compiled(model, optimizer, x, y)
        step(twin, twin_optimizer, x, y)
        edit(model, optimizer)
        edit(twin, twin_optimizer)
        compiled(model, optimizer, x, y)
        step(twin, twin_optimizer, x, y)
        torch.testing.assert_close(model.weight.detach(), twin.weight.detach())
        torch.testing.assert_close(optimizer.state[model.weight]["momentum_buffer"],
                                   twin_optimizer.state[twin.weight]["momentum_buffer"])
