"""Random valid models (tests/fuzz_models.py) compiled against eager PyTorch from the same
weights: one SGD training step (the loss, and every parameter after the step, i.e. its
gradient), at the top level, or two inside a staged loop (where the backend fuses SGD's step
into the backward pass), and a forward-only call (the output, whose shape must also be what the op
table's rules said). Dropout is compared in eval mode (its masks are the backend's own;
tests/test_cnn.hy checks them).

    HYTORCH_FUZZ_EXAMPLES=2000 HYTORCH_FUZZ_SEED=random nice pytest tests/test_random_models.py

Each failure names its kind (a signature, see fuzz_harness.fail) and prints the model as
Python; $HYTORCH_FUZZ_IGNORE lists signatures already reported.
"""
import contextlib
import copy
import operator

import pytest
import torch
from hypothesis import given, strategies as st

import hytorch
from hytorch.errors import CCompileError
from hytorch.ir.ops import OPS
from hytorch.ir.types import ShapeError, TensorType
from fuzz_harness import bounded_shrinking, fail, fuzz_settings, normalize
from fuzz_models import RandomModel, example_inputs, model_specs
from test_tensor_ops import steps_in_a_loop   # the backend applies SGD during its backward pass

LR = 0.5
STEPS_IN_A_LOOP = 2     # the second step runs on the weights the first one wrote
RTOL = 2e-4     # float32 kernels against PyTorch's: sums reordered, im2col vs direct
ATOL = 1e-6


@contextlib.contextmanager
def num_threads(n):
    """Compiled code may use n threads (the kernels' threaded paths, for wide models)."""
    saved = hytorch.get_num_threads()
    hytorch.set_num_threads(n)
    try:
        yield
    finally:
        hytorch.set_num_threads(saved)


def train_step(model, optimizer, x, target):
    optimizer.zero_grad()
    loss = model.loss(x, target)
    loss.backward()
    optimizer.step()
    return loss.item()


def forward(model, x):
    return model(x)


def compile_or_fail(kind, f, description, *args):
    try:
        return hytorch.stage(f, *args)
    except CCompileError as e:
        fail(f"{kind}:c-compile", f"{description}\nthe generated C does not compile:\n{e}")
    except Exception as e:  # noqa: BLE001  (any error staging a valid model is a bug)
        fail(f"{kind}:{type(e).__name__}:{normalize(e)}",
             f"{description}\nstaging a valid model raised {type(e).__name__}: {e}")


def loss_scale(model, x, target, loss):
    """What float32 rounding of `loss` is relative to: its terms' magnitude, not the sum
    (a sum of terms can cancel to near zero)."""
    with torch.no_grad():
        out = model(x).abs()
        terms = {"sum": out.sum(), "mean": out.mean()}.get(model.spec.loss, abs(loss))
    return max(float(terms), abs(loss))


def close(got, expected, scale):
    """`got` within float32 tolerance of `expected`, relative to `scale` (the magnitude the
    values are computed from)."""
    return bool(((got - expected).abs() <= ATOL + RTOL * scale).all())


def check_training_step(spec, seed, in_loop, description):
    torch.manual_seed(seed)
    model = RandomModel(spec, seed).eval()
    twin = copy.deepcopy(model)
    x, target = example_inputs(spec, seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=LR)
    before = [p.detach().clone() for p in model.parameters()]

    steps = STEPS_IN_A_LOOP if in_loop else 1
    for _ in range(steps):
        expected = train_step(twin, twin_optimizer, x, target)
    exact = float64_updates(model, x, target, steps)
    if in_loop:
        kind, args = "train-loop", [steps, optimizer, model.loss, x, target]
        step = compile_or_fail(kind, steps_in_a_loop, description, int, *args[1:])
    else:
        kind, args = "train", [model, optimizer, x, target]
        step = compile_or_fail(kind, train_step, description, *args)
    try:
        got = step(*args)
    except Exception as e:  # noqa: BLE001
        fail(f"{kind}-run:{type(e).__name__}:{normalize(e)}", f"{description}\nraised {e!r}")
    scale = loss_scale(twin, x, target, expected)
    if not abs(got - expected) <= ATOL + RTOL * scale:
        fail(f"{kind}:loss", f"{description}\nloss {got} (compiled) vs {expected} (eager)")
    for i, (b, p, q, e) in enumerate(zip(before, model.parameters(), twin.parameters(), exact)):
        # the gradient (the sum of the steps' gradients) is as precise as the values it is
        # made of; each step adds a rounding of b
        grad, expected_grad = (b - p.detach()) / LR, (b - q.detach()) / LR
        grad_scale = float(expected_grad.abs().max()) + float(b.abs().max()) / LR * 1e-2
        if not (close(grad, expected_grad, grad_scale)
                or as_precise_as_eager(grad, expected_grad, e / LR)):
            worst = float((grad - expected_grad).abs().max())
            fail(f"{kind}:gradient",
                 f"{description}\nparameter p{i} {list(b.shape)}: gradient off by {worst:.3g} "
                 f"(largest {float(expected_grad.abs().max()):.3g})\n"
                 f"compiled {grad}\neager {expected_grad}")


def float64_updates(model, x, target, steps):
    """Each parameter's change by `steps` SGD steps of a float64 copy of `model` (before the
    steps under test change it): the updates float32 code approximates."""
    exact = copy.deepcopy(model).double()
    before = [p.detach().clone() for p in exact.parameters()]
    optimizer = torch.optim.SGD(exact.parameters(), lr=LR)
    for _ in range(steps):
        train_step(exact, optimizer, x.double(), target if not target.is_floating_point()
                   else target.double())
    return [(b - p.detach()).float() for b, p in zip(before, exact.parameters())]


def as_precise_as_eager(grad, expected, exact):
    """Whether `grad` is as close to the float64 gradient `exact` as eager float32's
    `expected` is, within a few times its error: where terms of a sum cancel (a gradient that
    is zero in exact arithmetic), both are rounding noise of the terms' size."""
    eager_error = float((expected - exact).abs().max())
    return float((grad - exact).abs().max()) <= ATOL + 8 * eager_error


def check_forward(spec, seed, description):
    model = RandomModel(spec, seed).eval()
    x, _ = example_inputs(spec, seed)
    with torch.no_grad():
        expected = model(x)
    if tuple(expected.shape) != spec.output.shape:
        fail("shape-rule", f"{description}\nthe op table's rules give {spec.output.shape}, "
                           f"torch gives {tuple(expected.shape)}")
    compiled = compile_or_fail("forward", forward, description, model, x)
    try:
        got = torch.as_tensor(compiled(model, x))
    except Exception as e:  # noqa: BLE001
        fail(f"forward-run:{type(e).__name__}:{normalize(e)}", f"{description}\nraised {e!r}")
    if got.shape != expected.shape or not close(got, expected, float(expected.abs().max())):
        fail("forward:output", f"{description}\ncompiled {got}\neager {expected}")


def check_model(case):
    spec, seed, in_loop, threads = case
    where = ", steps in a staged loop" if in_loop else ""
    description = f"model (seed {seed}, {threads} thread(s){where}):\n{spec.describe()}"
    with num_threads(threads):
        check_forward(spec, seed, description)
        check_training_step(spec, seed, in_loop, description)


# (when shrinking, HYTORCH_FUZZ_SHRINK=1, a failure is replayed the same way, see fuzz_harness)
_bounded_check = bounded_shrinking(check_model, key=lambda case: (case[0].describe(), *case[1:]))


@fuzz_settings(default_examples=200)
@given(spec=model_specs(), seed=st.integers(0, 2 ** 16), in_loop=st.booleans(),
       threads=st.sampled_from([1, 2]))
def test_random_models_train_and_run_as_in_pytorch(spec, seed, in_loop, threads):
    _bounded_check((spec, seed, in_loop, threads))


# ------------------------------------------------------------------ what the fuzzer found


class ParameterFirst(torch.nn.Module):
    def __init__(self, op):
        super().__init__()
        self.op, self.p = op, torch.nn.Parameter(torch.randn(2, 3))

    def forward(self, x):
        return self.op(self.p, x).sum()


@pytest.mark.parametrize("op", [operator.add, operator.sub, operator.mul])
def test_a_parameter_on_the_left_of_an_elementwise_op_stages(op):
    """Found by this fuzzer: `p + x` of a module's parameter p and a staged x dispatches
    torch.Tensor.add (sub, mul), which the op table did not name."""
    model, x = ParameterFirst(op), torch.randn(2, 3)
    assert abs(hytorch.stage(forward, model, x)(model, x) - model(x).item()) < 1e-5


@pytest.mark.parametrize("op, other", [(operator.sub, [3]), (operator.mul, [3]),
                                       (operator.add, []), (operator.mul, [])])
def test_the_elementwise_rule_refuses_what_does_not_compile(op, other):
    """Found by this fuzzer: the rule accepted a row vector for - and * and 0-D operands, which
    the renderer then refused; a generator trusting the rule made models that did not stage.
    (The front end now broadcasts such operands to equal shapes before the node.)"""
    name = {operator.add: "+", operator.sub: "-", operator.mul: "*"}[op]
    with pytest.raises(ShapeError, match="equal shapes, or \\+ of a row vector"):
        OPS[name].result_type([TensorType((2, 3)), TensorType(other)], [])
    x, v = torch.randn(2, 3), torch.randn(other)
    f = hytorch.stage(lambda x, v: op(x, v).sum(), hytorch.TensorType([2, 3]),
                      hytorch.TensorType(other))
    assert abs(f(x, v).item() - op(x, v).sum().item()) < 1e-5
