"""The op table (hytorch/ir/ops.hy) against what it names: the C runtime's kernels, the torch
functions, its own backward ops. Each op's forward and gradients against torch.autograd are in
test_tensor_ops.hy (`test_each_differentiable_op_matches_torch`)."""
import pathlib
import re

import hy  # noqa: F401
import pytest

from hytorch.ir.ops import OPS, TABLE, kernel_names

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "c_runtime"
BACKEND = ROOT / "backend"

# Forward/backward kernels of the runtime that neither the table nor a bespoke or fused node
# of the backend calls yet, and why.
NOT_YET_STAGED = {}
# Words a kernel-call form may use besides the op's operands (see ops.hy's docstring).
ARGUMENT_WORDS = {"out", "aux", "rng", "NULL"}
ARGUMENT_FORMS = {"numel": 1, "rows": 1, "cols": 1, "planes": 1, "item": 1, "dim": 2, "aux": 1,
                  "workspace": 1, "outer": 2, "inner": 2}
# Forms whose second word is a dimension: a number or the name of one of the op's attributes.
DIMENSION_FORMS = {"dim", "outer", "inner"}


def declared_kernels(header):
    """The functions a runtime header declares."""
    text = re.sub(r"/\*.*?\*/", "", (RUNTIME / header).read_text(), flags=re.S)
    return set(re.findall(r"^\s*(?:HT_EXPORT\s+)?[\w ]+?[\s*]+(ht_\w+)\s*\(", text, flags=re.M))


KERNELS = declared_kernels("ht_kernels.h")
RUNTIME_KERNELS = KERNELS | declared_kernels("ht_int_ops.h")


def backend_kernel_calls():
    """Kernels the backend's bespoke and fused nodes call by name."""
    return {name for path in BACKEND.glob("*.hy")
            for name in re.findall(r"\b(ht_\w+)\(", path.read_text())}


def table_kernels():
    return {k for op in TABLE for k in op.kernels}


def test_the_header_parser_finds_the_kernels():
    assert {"ht_relu_fwd", "ht_nll_loss_fwd", "ht_linear_bwd_weight_sgd_fwd"} <= KERNELS
    assert "ht_sum_all_i64" in RUNTIME_KERNELS


@pytest.mark.parametrize("op", TABLE, ids=lambda op: op.name)
def test_every_kernel_of_the_table_is_declared(op):
    assert set(op.kernels) <= RUNTIME_KERNELS


def test_every_forward_and_backward_kernel_is_called():
    fwd_bwd = {k for k in KERNELS if k.endswith("_fwd") or "_bwd" in k}
    called = table_kernels() | backend_kernel_calls()
    assert fwd_bwd - called - set(NOT_YET_STAGED) == set()
    # an exception that is called now is no exception any more
    assert set(NOT_YET_STAGED) & called == set()
    assert {"ht_conv2d_fwd", "ht_max_pool2d_bwd", "ht_avg_pool2d_fwd", "ht_dropout_bwd"} <= called


def test_no_kernel_name_is_built_from_pieces():
    # grep must find every caller of a kernel: no "ht_" + name + "_bwd"
    for path in BACKEND.glob("*.hy"):
        assert not re.search(r'"ht_"|f"ht_\{', path.read_text()), path.name


@pytest.mark.parametrize("op", [op for op in TABLE if op.differentiable], ids=lambda op: op.name)
def test_a_gradient_is_made_of_ops_with_kernels(op):
    for name in op.backward_ops:
        assert name in OPS, f"{op.name}'s gradient uses {name}, which is not in the table"
        assert OPS[name].forward is not None, f"{name} has no kernels"


@pytest.mark.parametrize("op", [op for op in TABLE if op.forward is not None],
                         ids=lambda op: op.name)
def test_kernel_calls_use_only_operands_and_known_words(op):
    words = set(op.operands) | ARGUMENT_WORDS
    forms = op.forward.values() if isinstance(op.forward, dict) else [op.forward]
    def check_call(call):
        for arg in call[1:]:
            if isinstance(arg, list) and arg[0] == "workspace":
                assert len(arg) == 2 and isinstance(arg[1], list), arg
                check_call(arg[1])
            elif isinstance(arg, list):
                assert ARGUMENT_FORMS.get(arg[0]) == len(arg) - 1, arg
                assert arg[1] in words, arg
                if arg[0] in DIMENSION_FORMS:
                    assert isinstance(arg[2], int) or arg[2] in op.attrs, arg
            elif isinstance(arg, str):
                assert arg in words, arg
            else:
                assert isinstance(arg, (int, float)), arg

    for form in (f for calls in forms for f in calls):
        call = form[1] if form[0] == "check" else form
        assert kernel_names(form)[0] == call[0]
        check_call(call)


def test_a_workspace_names_the_function_sizing_it():
    assert OPS["conv2d"].kernels == ["ht_conv2d_fwd", "ht_conv2d_workspace"]
    assert "ht_conv2d_workspace" in KERNELS


@pytest.mark.parametrize("op", [op for op in TABLE if op.forward is not None],
                         ids=lambda op: op.name)
def test_an_op_writes_an_aux_buffer_when_it_declares_one(op):
    forms = op.forward.values() if isinstance(op.forward, dict) else [op.forward]
    writes = any(arg == "aux" for calls in forms for form in calls
                 for arg in (form[1] if form[0] == "check" else form)[1:])
    assert writes == (op.aux is not None)


def test_every_torch_name_is_a_torch_callable_that_stages():
    import torch
    from hytorch import tensors
    for op in TABLE:
        for name in op.torch:
            assert name.startswith("torch.")
            f = tensors.resolve(name)
            assert callable(f), name
            assert f in tensors.TORCH_FUNCTIONS, name
            owner, _, method = name.rpartition(".")
            if owner == "torch.Tensor":
                assert getattr(torch.Tensor, method) is f
                assert callable(getattr(tensors.TensorRep, method)), name


def test_the_table_is_importable_without_torch():
    import subprocess
    import sys
    program = ("import sys; sys.modules['torch'] = None\n"
               "import hy\n"
               "from hytorch.ir.ops import OPS\n"
               "import hytorch.backend.c_render\n"
               "print(sorted(OPS)[0])\n")
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("node, message", [
    ("(call relu (x0 x0))", r"`relu` takes 1 operand\(s\) \(x\)"),
    ("(call nll_loss_grad (x0))", r"`nll_loss_grad` takes 4 operand\(s\)"),
    ("(call log_softmax (x0 d))", "`log_softmax`'s dim must be a number, got d"),
    ("(call scale (x0 \"s\"))", "`scale`'s s must be a number"),
    ("(call grad_accumulate (x0))", "malformed grad_accumulate node"),   # not an op: a fused node
])
def test_a_malformed_table_op_is_an_ir_error(node, message):
    # The wrong number of operands was an "unknown IR node" (a raw AttributeError for a fused
    # node); a symbol as an attribute a raw TypeError.
    import hytorch
    text = f"(def f () (begin (begin (let d 1 (let x0 (tensor (2 3)) (let x1 {node} None))))))"
    with pytest.raises(hytorch.IRError, match=message):
        hytorch.compile_ir(text)


def test_a_call_of_a_list_is_an_ir_error():
    # a raw TypeError (unhashable list) before
    import hytorch
    with pytest.raises(hytorch.IRError):
        hytorch.compile_ir("(def f () (begin (begin (let x0 (tensor (2 3)) "
                           "(let x1 (call (x0) (x0)) None)))))")


@pytest.mark.parametrize("node, message", [
    ("(call max_pool2d_grad (x0 x0 x0 2 2 2 2))", "`y` has no auxiliary buffer"),
    ("(call conv2d (x0 None None 1 1 0 0))", "conv2d needs a tensor, got None"),   # b only
    ("(call conv2d (x0 w None 0 1 0 0))", "strides must be positive ints"),
    ("(call conv2d (x0 w None 1 1 -1 0))", "paddings must be ints >= 0"),
    ("(call max_pool2d (x0 7 2 1 1))", "a window of 7 does not fit in a size of 6"),
])
def test_a_malformed_image_op_is_an_ir_error(node, message):
    import hytorch
    text = ("(def f () (begin (begin (let x0 (tensor (2 3 6 6)) (let w (tensor (4 3 3 3)) "
            f"(let x1 {node} None))))))")
    with pytest.raises(hytorch.IRError, match=message):
        hytorch.compile_ir(text)


def test_a_conv2d_without_bias_reads_and_compiles_from_ir_text():
    import hytorch
    text = ("(def f () (begin (begin (let x0 (tensor (2 3 6 6)) (let w (tensor (4 3 3 3)) "
            "(let y (call conv2d (x0 w None 1 1 1 1)) (let z (call max_pool2d (y 2 2 2 2)) "
            "(let r (array-get z data 0) r))))))))")
    assert isinstance(hytorch.compile_ir(text)(), float)
