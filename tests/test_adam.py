"""torch.optim.Adam and AdamW compiled: training matches eager PyTorch step for step over drawn
hyperparameters, and the optimizer's state (step, exp_avg, exp_avg_sq, max_exp_avg_sq) goes
from the torch optimizer into the compiled program and back, so eager and compiled calls can
alternate. The optimizer table (hytorch/ir/optimizers.hy) agrees with torch's signatures."""
import copy
import inspect

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import hytorch
from hytorch.data import MNIST
from hytorch.examples.mnist_mlp import Net, train as train_epochs
from hytorch.ir.optimizers import OPTIMIZERS
from hytorch.lift import _torch_class

STEPS_PER_CALL = 2
LOSS_TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-6


def train(model, optimizer, x, y):
    """STEPS_PER_CALL steps on one batch; the sum of their losses. Runs eagerly as it is, and
    staged by hytorch.stage."""
    total = 0.0
    for _ in range(STEPS_PER_CALL):
        optimizer.zero_grad()
        loss = F.nll_loss(F.log_softmax(model(x), dim=1), y)
        loss.backward()
        optimizer.step()
        total = total + loss.item()
    return total


def mlp():
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def batch(seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(16, 6, generator=generator), torch.randint(0, 3, (16,), generator=generator)


def assert_same_training(model, optimizer, twin, twin_optimizer):
    """Same weights, and the same optimizer state under the same names, as the eager twin."""
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(p, q, rtol=1e-6, atol=WEIGHT_TOLERANCE), (p - q).abs().max()
        state, expected = optimizer.state[p], twin_optimizer.state[q]
        assert state.keys() == expected.keys()
        assert torch.equal(state["step"], expected["step"])
        assert state["step"].dtype == expected["step"].dtype
        for key in expected.keys() - {"step"}:
            assert state[key].shape == expected[key].shape
            assert torch.allclose(state[key], expected[key], rtol=1e-4, atol=1e-7), key


adam_options = st.fixed_dictionaries({
    "lr": st.floats(1e-4, 1e-2),
    "betas": st.tuples(st.floats(0.0, 0.95), st.floats(0.9, 0.9999)),
    "eps": st.sampled_from([1e-8, 1e-6, 1e-3]),
    "weight_decay": st.sampled_from([0.0, 1e-3, 0.1]),
    "amsgrad": st.booleans(),
    "maximize": st.booleans(),
})


def check_alternating_calls(optimizer_class, options, schedule, seed):
    """Train a model and its eager twin; the model's calls are compiled where `schedule` says,
    eager elsewhere: the state written back by one kind of call is continued by the other."""
    torch.manual_seed(seed)
    model = mlp()
    twin = copy.deepcopy(model)
    optimizer = optimizer_class(model.parameters(), **options)
    twin_optimizer = optimizer_class(twin.parameters(), **options)
    x, y = batch(seed)
    compiled = hytorch.stage(train, model, optimizer, x, y)
    for compiled_call in schedule:
        run = compiled if compiled_call else train
        loss = run(model, optimizer, x, y)
        expected = train(twin, twin_optimizer, x, y)
        assert abs(loss - expected) < LOSS_TOLERANCE * STEPS_PER_CALL
        assert_same_training(model, optimizer, twin, twin_optimizer)


schedules = st.lists(st.booleans(), min_size=3, max_size=4).filter(any)


@settings(max_examples=6, deadline=None, derandomize=True)
@given(options=adam_options, decoupled=st.booleans(), schedule=schedules, seed=st.integers(0, 99))
def test_adam_compiled_matches_eager_and_its_state_round_trips(options, decoupled, schedule, seed):
    check_alternating_calls(torch.optim.Adam, {**options, "decoupled_weight_decay": decoupled},
                            schedule, seed)


@settings(max_examples=6, deadline=None, derandomize=True)
@given(options=adam_options, schedule=schedules, seed=st.integers(0, 99))
def test_adamw_compiled_matches_eager_and_its_state_round_trips(options, schedule, seed):
    check_alternating_calls(torch.optim.AdamW, options, schedule, seed)


def logged_losses(log):
    return [float(line.rsplit("Loss: ", 1)[1]) for line in log.splitlines() if "Loss: " in line]


@pytest.mark.parametrize("optimizer_class, options", [
    (torch.optim.Adam, {"lr": 0.002, "weight_decay": 1e-4}),
    (torch.optim.AdamW, {"lr": 0.001, "amsgrad": True}),
])
def test_the_demo_loop_on_fashion_mnist(capfd, optimizer_class, options):
    """The demo's training loop (a loop over a loader, in C) with Adam: every batch's logged
    running loss, the weights and the optimizer state as eager PyTorch's."""
    torch.manual_seed(5)
    model = Net()
    twin = copy.deepcopy(model)
    optimizer = optimizer_class(model.parameters(), **options)
    twin_optimizer = optimizer_class(twin.parameters(), **options)

    def loader():
        return MNIST(train=True, batch_size=32, shuffle=True, seed=5, limit=320)
    compiled = hytorch.stage(train_epochs, model, optimizer, loader(), int, int)
    capfd.readouterr()
    mean_loss = compiled(model, optimizer, loader(), 2, 1)
    compiled_log = capfd.readouterr().out
    expected = train_epochs(twin, twin_optimizer, loader(), 2, 1)
    eager_log = capfd.readouterr().out
    losses, eager_losses = logged_losses(compiled_log), logged_losses(eager_log)
    assert len(losses) == len(eager_losses) == 20
    assert max(abs(a - b) for a, b in zip(losses, eager_losses)) <= 2e-6   # printed to 6 places
    assert abs(mean_loss - expected) < 1e-5
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=5e-5), (p - q).abs().max()
        state, eager_state = optimizer.state[p], twin_optimizer.state[q]
        assert state.keys() == eager_state.keys()
        assert torch.equal(state["step"], eager_state["step"])
        for key in eager_state.keys() - {"step"}:
            assert torch.allclose(state[key], eager_state[key], rtol=1e-3, atol=1e-8), key


def test_a_fresh_optimizer_starts_from_zeroed_state():
    """The compiled program's state outlives a call: a new optimizer (empty torch state) given
    to the same compiled function must start from torch's initial state, not the last one's."""
    torch.manual_seed(3)
    model = mlp()
    twin = copy.deepcopy(model)
    x, y = batch(3)
    first = torch.optim.Adam(model.parameters(), lr=0.01, amsgrad=True)
    compiled = hytorch.stage(train, model, first, x, y)
    compiled(model, first, x, y)
    twin.load_state_dict(model.state_dict())
    fresh = torch.optim.Adam(model.parameters(), lr=0.01, amsgrad=True)
    twin_fresh = torch.optim.Adam(twin.parameters(), lr=0.01, amsgrad=True)
    assert abs(compiled(model, fresh, x, y) - train(twin, twin_fresh, x, y)) < LOSS_TOLERANCE
    assert_same_training(model, fresh, twin, twin_fresh)


def test_parameter_groups_with_the_same_settings():
    torch.manual_seed(4)
    model = mlp()
    twin = copy.deepcopy(model)

    def groups(m):
        return [{"params": m[0].parameters()}, {"params": m[2].parameters()}]
    optimizer = torch.optim.AdamW(groups(model), lr=0.005)
    twin_optimizer = torch.optim.AdamW(groups(twin), lr=0.005)
    x, y = batch(4)
    compiled = hytorch.stage(train, model, optimizer, x, y)
    assert abs(compiled(model, optimizer, x, y) - train(twin, twin_optimizer, x, y)) < 1e-5
    assert_same_training(model, optimizer, twin, twin_optimizer)


@pytest.mark.parametrize("make, words", [
    (lambda ps: torch.optim.Adam(ps, lr=torch.tensor(0.01)), ["Adam's lr is a Tensor"]),
    (lambda ps: torch.optim.Adam([{"params": ps[:2]}, {"params": ps[2:], "betas": (0.8, 0.9)}]),
     ["Adam parameter groups with different betas"]),
    (lambda ps: torch.optim.AdamW([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.1}]),
     ["AdamW parameter groups with different lr"]),
    (lambda ps: torch.optim.SGD(ps, lr=0.1, maximize=True), ["SGD with maximize=True"]),
])
def test_unsupported_options_are_named(make, words):
    model = mlp()
    x, y = batch(0)
    with pytest.raises(hytorch.StagingError) as e:
        hytorch.lms_compile(train, model, make(list(model.parameters())), x, y)
    for word in words:
        assert word in str(e.value)


def test_an_adam_node_with_the_wrong_settings_is_an_ir_error():
    text = ("(def f (in) (begin (begin (let x0 (tensor (3)) (let x1 (variable x0 False) "
            "(let x2 (Adam (0.1 0.9) (x1)) 0))))))")
    with pytest.raises(hytorch.IRError) as e:
        hytorch.compile_ir(text)
    assert "Adam takes (lr beta1 beta2 eps weight_decay amsgrad maximize " in str(e.value)
    assert "not 2 setting(s)" in str(e.value)


def test_flags_that_change_nothing_are_accepted():
    model = mlp()
    x, y = batch(0)
    optimizer = torch.optim.Adam(model.parameters(), foreach=False, differentiable=True)
    assert "(Adam (0.001 0.9 0.999 1e-08 0.0 False False False)" in str(
        hytorch.lms_compile(train, model, optimizer, x, y))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_the_table_has_torchs_defaults_and_covers_every_option(name):
    entry = OPTIMIZERS[name]
    cls = _torch_class(entry.torch)
    signature = inspect.signature(cls).parameters
    for s in entry.settings:
        if s.torch in signature:
            default = signature[s.torch].default
            assert (default if s.index is None else default[s.index]) == s.default, s.name
        else:   # an option torch's class sets itself (AdamW's decoupled weight decay)
            group = cls([torch.zeros(1, requires_grad=True)]).param_groups[0]
            assert group[s.torch] == s.default, s.name
    covered = {s.torch for s in entry.settings} | set(entry.accepted) | set(entry.fixed)
    group = cls([torch.zeros(1, requires_grad=True)]).param_groups[0]
    assert (set(signature) | set(group)) - {"params"} <= covered
    for option, value in entry.fixed.items():
        assert signature[option].default == value
