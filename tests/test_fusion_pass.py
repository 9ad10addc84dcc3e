"""The fusion pass (backend/fusion.hy): the IR it gives the renderer (`.rendered_ir`) names each
fusion with an explicit node, applies it exactly when the block allows it, and training
compiled with or without a fusion matches eager PyTorch step for step."""
import contextlib
import io
import types

import hy
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import hytorch
from hytorch.api import parse_ir
from hytorch.backend.fusion import fuse
from hytorch.data import ArrayLoader
from hytorch.ir.syntax import Sym, chain_lets, chain_of, parse_ir as parse_raw, print_ir
from test_array_loader_staged import Net, captured_stdout
from test_more_tensor_ops import one_step

# One training loop per arrangement of zero_grad / backward / step in its body. Each prints
# every step's loss and, where it reads one, a weight's sum: in full, as Python prints floats.
STAGED_SOURCE = """
(require hytorch [defstaged])
(import torch torch.nn.functional :as F)

(defstaged usual [model optimizer loader]
  (for [[i [data target]] (enumerate loader)]
    (.zero-grad optimizer)
    (setv loss (F.mse-loss (model data) target))
    (.backward loss)
    (.step optimizer)
    (print (.format \"loss {}\" (.item loss))))
  0)

(defstaged weight-read-before-the-step [model optimizer loader]
  (for [[i [data target]] (enumerate loader)]
    (.zero-grad optimizer)
    (setv loss (F.mse-loss (model data) target))
    (.backward loss)
    (print (.format \"weight {}\" (.item (.sum model.fc2.weight))))
    (.step optimizer)
    (print (.format \"loss {}\" (.item loss))))
  0)

(defstaged two-backward-passes [model optimizer loader]
  (for [[i [data target]] (enumerate loader)]
    (.zero-grad optimizer)
    (setv loss (F.mse-loss (model data) target))
    (.backward loss)
    (setv again (* 0.5 (F.mse-loss (model data) target)))
    (.backward again)
    (.step optimizer)
    (print (.format \"loss {}\" (.item loss))))
  0)

(defstaged a-plain-step-after-the-loop [model optimizer loader]
  (for [[i [data target]] (enumerate loader)]
    (.zero-grad optimizer)
    (setv loss (F.mse-loss (model data) target))
    (.backward loss)
    (.step optimizer)
    (print (.format "loss {}" (.item loss))))
  (.zero-grad optimizer)
  (setv last (F.mse-loss (model (torch.ones 4 3)) (torch.zeros 4 1)))
  (.backward last)
  (.step optimizer)
  (print (.format "last {}" (.item last)))
  0)

(defstaged zero-grad-last [model optimizer loader]
  (.zero-grad optimizer)
  (for [[i [data target]] (enumerate loader)]
    (setv loss (F.mse-loss (model data) target))
    (.backward loss)
    (.step optimizer)
    (.zero-grad optimizer)
    (print (.format \"loss {}\" (.item loss))))
  0)
"""

module = types.ModuleType("fusion_arrangements")
for form in hy.read_many(STAGED_SOURCE):
    hy.eval(form, module=module)

# arrangement -> whether its step can be applied during the backward pass (with SGD)
ARRANGEMENTS = {"usual": True, "a_plain_step_after_the_loop": True,
                "weight_read_before_the_step": False,
                "two_backward_passes": False, "zero_grad_last": False}
OPTIMIZERS = {
    "SGD": lambda ps: torch.optim.SGD(ps, lr=0.02),
    "SGD with momentum": lambda ps: torch.optim.SGD(ps, lr=0.02, momentum=0.5),
    "Adam": lambda ps: torch.optim.Adam(ps, lr=0.01),   # its step needs the whole gradient
}


def run(arrangement, make_optimizer, batch_size, seed, compiled):
    """The printed lines and the trained model, staged and compiled or eager."""
    rng = np.random.default_rng(seed)
    inputs = rng.standard_normal((24, 3))
    targets = inputs @ rng.standard_normal((3, 1)) + 0.1 * rng.standard_normal((24, 1))
    torch.manual_seed(seed)
    model = Net(3, 1)
    optimizer = make_optimizer(model.parameters())
    loader = ArrayLoader(inputs, targets, batch_size=batch_size, shuffle=True, seed=seed)
    function = getattr(module, arrangement)
    if not compiled:
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            function(model, optimizer, loader)
        return printed.getvalue().splitlines(), model, None
    program = hytorch.stage(function, model, optimizer, loader)
    with captured_stdout() as lines:     # (compiled code prints to file descriptor 1)
        program(model, optimizer, loader)
    return lines, model, program


@settings(max_examples=30, deadline=None, derandomize=True)
@given(arrangement=st.sampled_from(sorted(ARRANGEMENTS)), optimizer=st.sampled_from(sorted(OPTIMIZERS)),
       batch_size=st.integers(1, 9), seed=st.integers(0, 99))
def test_training_matches_eager_whether_or_not_the_step_is_fused(arrangement, optimizer,
                                                                  batch_size, seed):
    make = OPTIMIZERS[optimizer]
    staged, model, program = run(arrangement, make, batch_size, seed, compiled=True)
    eager, twin, _ = run(arrangement, make, batch_size, seed, compiled=False)
    fused = ARRANGEMENTS[arrangement] and optimizer != "Adam"
    assert ("backward_and_step" in program.rendered_ir) == fused
    assert ("step_remaining" in program.rendered_ir) == fused
    assert ("for_dataloader_pipelined" in program.rendered_ir) == fused
    assert [line.split()[0] for line in staged] == [line.split()[0] for line in eager]
    np.testing.assert_allclose([float(line.split()[1]) for line in staged],
                               [float(line.split()[1]) for line in eager], rtol=1e-4, atol=1e-6)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(p, q, atol=2e-5), (p - q).abs().max()


def test_the_rendered_ir_is_a_fixed_point_and_compiles_to_the_same_c():
    _, _, program = run("usual", OPTIMIZERS["SGD with momentum"], 4, 0, compiled=True)
    assert print_ir(fuse(parse_ir(program.rendered_ir).node)) == program.rendered_ir
    again = hytorch.compile_ir(program.rendered_ir, *program.program.arg_types)
    assert again.c_source == program.c_source
    assert "ht_linear_bwd_weight_sgd_fwd(" in again.c_source   # the pipelined first layer


def usual_ir():
    _, _, program = run("usual", OPTIMIZERS["SGD"], 4, 0, compiled=True)
    return program


def test_a_pipelined_loop_must_name_its_first_layer():
    program = usual_ir()
    text = program.rendered_ir
    start = text.index("for_dataloader_pipelined")
    dot, weight = text[text.index("(", start + 30) + 1:].split(")")[0].split()
    wrong = text.replace(f"({dot} {weight})", f"(not_the_first_layer {weight})", 1)
    with pytest.raises(hytorch.IRError, match="must name the body's first layer"):
        hytorch.compile_ir(wrong, *program.program.arg_types)


def test_backward_and_step_needs_an_optimizer_whose_step_it_can_apply():
    _, _, program = run("usual", OPTIMIZERS["Adam"], 4, 0, compiled=True)
    loss = program.ir.split(" backward)")[0].split()[-1]
    optimizer = program.ir.split(" zero_grad)")[0].split()[-1]
    text = program.ir.replace(f"(call {loss} backward)", f"(call {loss} backward_and_step ({optimizer}))")
    with pytest.raises(hytorch.IRError, match="cannot be applied during the backward pass"):
        hytorch.compile_ir(text, *program.program.arg_types)


def insert_let(chain_node, after, new_let):
    """`chain_node` (a chain of lets) with `new_let` [name rhs] after the let for which
    `after(name, rhs)` holds."""
    lets, result = chain_lets(chain_node)
    at = next(i for i, (name, rhs) in enumerate(lets) if after(name, rhs)) + 1
    return chain_of([*lets[:at], new_let, *lets[at:]], result)


def loop_of(node):
    """The for_dataloader node inside `node`."""
    if isinstance(node, list):
        if node and node[0] == "for_dataloader":
            return node
        for x in node:
            found = loop_of(x)
            if found is not None:
                return found
    return None


@pytest.mark.parametrize("how", ["the tensor a variable wraps", "another name for the variable"])
def test_a_weight_read_between_backward_and_step_by_another_name_stops_the_fusion(how):
    """A read of the first layer's weight between the backward pass and the step, by a name
    other than its variable's, sees the weight before the step: no fusion."""
    program = usual_ir()
    node = parse_raw(program.ir)
    top = node[3][1]
    top_chain = top[1]
    variable = next(name for name, rhs in chain_lets(top_chain)[0]
                    if isinstance(rhs, list) and rhs[:1] == ["variable"])
    tensor = next(rhs[1] for name, rhs in chain_lets(top_chain)[0] if name == variable)
    if how == "the tensor a variable wraps":
        read = tensor
    else:
        read = Sym("alias")
        top[1] = insert_let(top_chain, lambda name, rhs: name == variable, [read, variable])
    loop = loop_of(node)
    loop[3][1] = insert_let(loop[3][1], lambda name, rhs: rhs[-1:] == ["backward"],
                            [Sym("read"), [Sym("array-get"), read, Sym("data"), 0]])
    compiled = hytorch.compile_ir(print_ir(node), *program.program.arg_types)
    assert "backward_and_step" not in compiled.rendered_ir
    assert "for_dataloader_pipelined" not in compiled.rendered_ir
    assert "(let read (array-get" in compiled.rendered_ir


# ------------------------------------------------------------------ relu into max pooling

def conv_relu_pool(x, w, pool, also_read):
    """A loss through relu then max_pool2d; `also_read`: the relu's output read once more."""
    h = F.relu(F.conv2d(x, w))
    pooled = F.max_pool2d(h, pool)
    loss = (pooled * pooled).sum()
    return loss + h.mean() if also_read else loss


@settings(max_examples=12, deadline=None, derandomize=True)
@given(n=st.integers(1, 2), c=st.integers(1, 3), size=st.integers(3, 9), pool=st.integers(1, 3),
       also_read=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_a_relu_only_a_max_pooling_reads_is_folded_into_it(n, c, size, pool, also_read, seed):
    """The same loss and gradients as eager PyTorch, with the fused op exactly when the relu's
    output has no other reader."""
    torch.manual_seed(seed)
    x = torch.randn(n, c, size, size)
    start = torch.randn(4, c, 2, 2)
    losses, grads, programs = [], [], []
    for compiled in (False, True):
        w = torch.nn.Parameter(start.clone())
        optimizer = torch.optim.SGD([w], lr=1.0)   # (the step is the gradient)
        loss_fn = lambda x, w: conv_relu_pool(x, w, min(pool, size - 1), also_read)  # noqa: E731
        if compiled:
            program = hytorch.stage(one_step, optimizer, loss_fn, x, w)
            losses.append(program(optimizer, loss_fn, x, w))
            programs.append(program)
        else:
            losses.append(one_step(optimizer, loss_fn, x, w))
        grads.append(start - w.detach())
    assert ("relu_max_pool2d" in programs[0].rendered_ir) == (not also_read)
    assert abs(losses[0] - losses[1]) <= 1e-4 * max(1.0, abs(losses[0]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-5)


def test_relu_then_max_pooling_keeps_nan_and_infinities_where_torch_does():
    x = torch.randn(2, 3, 6, 6)
    x[0, 0, 0, 0], x[0, 1, 2, 3], x[1, 2, 5, 5], x[1, 0, 1, 1] = (
        float("nan"), float("inf"), float("-inf"), -0.0)
    f = hytorch.stage(lambda x: F.max_pool2d(F.relu(x), 2), hytorch.TensorType([2, 3, 6, 6]))
    assert "relu_max_pool2d" in f.rendered_ir
    torch.testing.assert_close(torch.as_tensor(f(x)), F.max_pool2d(F.relu(x), 2), equal_nan=True)


# ------------------------------------------------------------------ the convolution into relu and max pooling

def eager_and_compiled_steps(loss, x, start_w, start_b, bias):
    """One SGD step (lr 1: the step is the gradient) of `loss(x, w, b)` (b None without
    `bias`) from the start weights, eagerly and compiled: ([eager loss, compiled loss],
    [eager gradients, compiled gradients], the compiled program's rendered IR)."""
    losses, grads, ir = [], [], None
    for compiled in (False, True):
        w, b = torch.nn.Parameter(start_w.clone()), torch.nn.Parameter(start_b.clone())
        params = [w, b] if bias else [w]
        optimizer = torch.optim.SGD(params, lr=1.0)
        loss_fn = lambda x, *params: loss(x, params[0], params[1] if bias else None)  # noqa: E731
        if compiled:
            program = hytorch.stage(one_step, optimizer, loss_fn, x, *params)
            losses.append(program(optimizer, loss_fn, x, *params))
            ir = program.rendered_ir
        else:
            losses.append(one_step(optimizer, loss_fn, x, *params))
        grads.append([start - p.detach() for start, p in zip([start_w, start_b], params)])
    return losses, grads, ir


def conv_relu_pool_loss(x, w, b, pool, stride, also_read):
    """A loss through conv2d, relu, max_pool2d; `also_read`: the convolution's output read once
    more (the relu is then folded into the pooling alone)."""
    y = F.conv2d(x, w, b)
    pooled = F.max_pool2d(F.relu(y), pool, stride)
    loss = (pooled * pooled).sum()
    return loss + y.mean() if also_read else loss


@settings(max_examples=12, deadline=None, derandomize=True)
@given(n=st.integers(1, 2), c=st.integers(1, 3), size=st.integers(3, 9), pool=st.integers(1, 3),
       stride=st.integers(1, 3), bias=st.booleans(), also_read=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_a_convolution_only_a_relu_and_max_pooling_read_is_folded_into_them(
        n, c, size, pool, stride, bias, also_read, seed):
    """The same loss and gradients as eager PyTorch, with conv2d_relu_max_pool2d exactly when
    the convolution's output has no other reader (relu_max_pool2d otherwise)."""
    torch.manual_seed(seed)
    x = torch.randn(n, c, size, size)
    start_w, start_b = torch.randn(4, c, 2, 2), torch.randn(4)
    pool = min(pool, size - 1)
    losses, grads, ir = eager_and_compiled_steps(
        lambda x, w, b: conv_relu_pool_loss(x, w, b, pool, stride, also_read),
        x, start_w, start_b, bias)
    assert ("conv2d_relu_max_pool2d" in ir) == (not also_read)
    assert "relu_max_pool2d" in ir
    assert abs(losses[0] - losses[1]) <= 1e-4 * max(1.0, abs(losses[0]))
    for got, want in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_a_convolution_relu_and_max_pooling_keep_nan_and_infinities_where_torch_does():
    x = torch.randn(2, 3, 7, 7)
    x[0, 0, 0, 0], x[0, 1, 2, 3], x[1, 2, 5, 5], x[1, 0, 1, 1] = (
        float("nan"), float("inf"), float("-inf"), -0.0)
    w, b = torch.randn(4, 3, 2, 2), torch.randn(4)
    f = hytorch.stage(lambda x, w, b: F.max_pool2d(F.relu(F.conv2d(x, w, b)), 2),
                      hytorch.TensorType([2, 3, 7, 7]), hytorch.TensorType([4, 3, 2, 2]),
                      hytorch.TensorType([4]))
    assert "conv2d_relu_max_pool2d" in f.rendered_ir
    torch.testing.assert_close(torch.as_tensor(f(x, w, b)),
                               F.max_pool2d(F.relu(F.conv2d(x, w, b)), 2), equal_nan=True)


# ------------------------------------------------------------------ relu into the convolution

def conv_relu(x, w, b, also_read):
    """A loss through conv2d then relu; `also_read`: the convolution's output read once more."""
    y = F.conv2d(x, w, b)
    h = F.relu(y)
    loss = (h * h).sum()
    return loss + y.mean() if also_read else loss


@settings(max_examples=12, deadline=None, derandomize=True)
@given(n=st.integers(1, 2), c=st.integers(1, 3), size=st.integers(2, 9), bias=st.booleans(),
       also_read=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_a_relu_that_alone_reads_a_convolution_is_folded_into_it(n, c, size, bias, also_read, seed):
    """The same loss and gradients as eager PyTorch, with conv2d_relu exactly when the
    convolution's output has no other reader."""
    torch.manual_seed(seed)
    x = torch.randn(n, c, size, size)
    start_w, start_b = torch.randn(4, c, 2, 2), torch.randn(4)
    losses, grads, ir = eager_and_compiled_steps(
        lambda x, w, b: conv_relu(x, w, b, also_read), x, start_w, start_b, bias)
    assert ("conv2d_relu" in ir) == (not also_read)
    assert ir.count("(call relu_grad") == 1    # once, for the weight's and the bias's gradients
    assert abs(losses[0] - losses[1]) <= 1e-4 * max(1.0, abs(losses[0]))
    for got, want in zip(grads[1], grads[0]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
