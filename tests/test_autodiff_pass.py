"""The autodiff pass (backend/autodiff.hy): every backward pass is written into the program the
renderer gets, as IR lets (`.backward_ir`, the same text as `.rendered_ir`); a loop run again
for its gradients is a `bptt` node holding its body's backward. The renderer renders what it
is given: the program reads back and renders to the same C, and an edited gradient is the
gradient the compiled code applies."""
import copy
import re

import pytest
import torch
from hypothesis import given, settings, strategies as st

import hytorch
from hytorch.api import IRProgram
from hytorch.backend.autodiff import differentiate
from hytorch.backend.fusion import fuse
from hytorch.backend.infer import infer
from hytorch.ir.syntax import Sym, parse_ir, print_ir
from hytorch.native import _arg_kind, compile_program, render_program
from hytorch.torch_bridge import loader_dims
from fuzz_models import RandomModel, example_inputs, model_specs
from test_loop_gradient_edge_cases import INPUTS, RNN, TARGET
from test_random_models import train_step
import test_random_loops as random_loops
from test_tensor_ops import steps_in_a_loop

BARE_BACKWARD = re.compile(r"\(call \S+ backward\)|\(call \S+ backward_and_step \(\S+\)\)")


def read_back(program, text):
    """`text` as the program `program` was staged as (its parameters' types, what it lifted)."""
    return IRProgram(parse_ir(text), program.arg_types, program.bindings)


def passes(program):
    """The passes' output for `program`, printed."""
    kinds = [_arg_kind(t) for t in program.arg_types]
    dims = loader_dims(program)
    return print_ir(differentiate(infer(fuse(program.node), kinds, dims), kinds, dims).program)


def assert_complete_and_a_fixed_point(program):
    rendered = render_program(program)
    text = rendered["rendered_ir"]
    assert "backward" in text
    assert not BARE_BACKWARD.search(text), "a backward pass was left underived"
    again = read_back(program, text)
    assert passes(again) == text
    assert render_program(again)["source"] == rendered["source"]
    return text


@settings(max_examples=40, deadline=None, derandomize=True)
@given(spec=model_specs(), seed=st.integers(0, 2 ** 16), in_loop=st.booleans())
def test_random_models_backward_ir_is_complete_and_renders_to_the_same_c(spec, seed, in_loop):
    torch.manual_seed(seed)
    model = RandomModel(spec, seed).eval()
    x, target = example_inputs(spec, seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    if in_loop:
        program = hytorch.lms_compile(steps_in_a_loop, int, optimizer, model.loss, x, target)
    else:
        program = hytorch.lms_compile(train_step, model, optimizer, x, target)
    text = assert_complete_and_a_fixed_point(program)
    if in_loop:
        assert "backward_and_step" in text   # (the fusion pass ran first)


def rnn_program():
    from test_loop_gradient_edge_cases import two_sequences_reset_between as step_fn  # (Hy)
    torch.manual_seed(0)
    model = RNN()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    return hytorch.lms_compile(step_fn, model, opt, INPUTS, TARGET)


def test_a_differentiated_loop_is_a_bptt_node_holding_its_bodys_backward():
    text = assert_complete_and_a_fixed_point(rnn_program())
    assert "(while_taped 0 " in text
    bptt = text[text.index("(bptt 0 "):]
    assert "(begin (let g" in bptt   # the body's gradient lets, from its cells' seeds


@settings(max_examples=15, deadline=None, derandomize=True)
@given(ops=st.lists(st.sampled_from(random_loops.OPS), max_size=4), memory=st.booleans(),
       loss=st.sampled_from(random_loops.LOSSES), momentum=st.sampled_from([0.0, 0.9]))
def test_random_recurrent_cells_backward_ir_is_complete_and_renders_to_the_same_c(
        ops, memory, loss, momentum):
    """Random cells trained through a staged loop (tests/test_random_loops.hy): each a bptt."""
    torch.manual_seed(7)
    cell = random_loops.RandomCell(ops, memory, loss)
    optimizer = torch.optim.SGD(cell.parameters(), lr=0.05, momentum=momentum)
    program = hytorch.lms_compile(
        random_loops.recurrent_step, cell, optimizer,
        hytorch.ListOf(hytorch.TensorType([random_loops.BATCH, random_loops.INPUT])),
        hytorch.TensorType([random_loops.BATCH, random_loops.HIDDEN]))
    assert "(bptt 0 " in assert_complete_and_a_fixed_point(program)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("(bptt 0 ", "(bptt 7 ", 1), "K a loop taped before it"),
    (lambda t: t.replace("(bptt 0 ((", "(bptt 0 ((extra ", 1), "has 5 parts"),
    (lambda t: t.replace("(while_taped 0 ", "(while_taped 1 ", 1), "two loops are taped as loop 1"),
])
def test_a_malformed_bptt_node_read_back_is_an_ir_error(edit, message):
    program = rnn_program()
    text = render_program(program)["rendered_ir"]
    with pytest.raises(hytorch.IRError, match=message):
        render_program(read_back(program, edit(text)))


def backward_block(node):
    """The `(begin CHAIN)` of the first backward pass inside `node`."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, list):
            if len(n) == 4 and n[0] == "call" and n[2] == "backward":
                return n[3]
            stack.extend(reversed(n))
    raise AssertionError("no backward pass")


def test_the_renderer_applies_the_gradient_it_is_given():
    """Scale the loss's seed gradient by 3 in the backward lets: one SGD step moves every
    weight three times as far as eager PyTorch's."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    twin = copy.deepcopy(model)
    for m in (model, twin):
        m.loss = lambda x, t, m=m: torch.nn.functional.mse_loss(m(x), t)
    x, target = torch.randn(5, 4), torch.randn(5, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    program = hytorch.lms_compile(train_step, model, optimizer, x, target)
    node = parse_ir(render_program(program)["rendered_ir"])
    block = backward_block(node)
    let, g, seed, rest = block[1]
    assert seed[:2] == ["call", "ones_like"]
    unscaled = Sym(f"{g}_unscaled")
    block[1] = [let, unscaled, seed, [let, g, [Sym("call"), Sym("scale"), [unscaled, 3.0]], rest]]
    before = [p.detach().clone() for p in model.parameters()]
    compile_program(read_back(program, print_ir(node)))(model, optimizer, x, target)
    train_step(twin, torch.optim.SGD(twin.parameters(), lr=0.1), x, target)
    for b, p, q in zip(before, model.parameters(), twin.parameters()):
        torch.testing.assert_close(b - p.detach(), 3 * (b - q.detach()), atol=1e-6, rtol=1e-4)
