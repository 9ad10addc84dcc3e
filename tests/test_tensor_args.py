"""Tensor parameters (hytorch.TensorType, or an example array): compiled functions take torch
tensors or NumPy arrays, read them in place, and return what they were given."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import hytorch
from hytorch.ir.syntax import print_ir


def softmax_of_relu(x):
    return F.softmax(F.relu(x) * 2.0, dim=-1)


@pytest.fixture(scope="module")
def compiled():
    """Functions compiled once per type for all examples."""
    return {}


def compiled_for(compiled, f, *types):
    key = (f, *types)
    if key not in compiled:
        compiled[key] = hytorch.stage(f, *types)
    return compiled[key]


@settings(max_examples=30, deadline=None, derandomize=True)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), data=st.data())
def test_numpy_in_numpy_out_torch_in_torch_out(compiled, shape, data):
    f = compiled_for(compiled, softmax_of_relu, hytorch.TensorType(shape))
    numel = int(np.prod(shape))
    values = data.draw(st.lists(st.floats(-1e3, 1e3, width=32), min_size=numel, max_size=numel))
    array = np.array(values, dtype=np.float32).reshape(shape)
    expected = softmax_of_relu(torch.from_numpy(array))
    from_numpy, from_torch = f(array), f(torch.from_numpy(array))
    assert isinstance(from_numpy, np.ndarray) and isinstance(from_torch, torch.Tensor)
    torch.testing.assert_close(torch.from_numpy(from_numpy), expected)
    torch.testing.assert_close(from_torch, expected)


def test_a_strided_argument_is_copied_once_and_read_right(compiled):
    f = compiled_for(compiled, softmax_of_relu, hytorch.TensorType([3, 4]))
    wide = np.arange(24, dtype=np.float32).reshape(3, 8) / 7 - 1
    strided = wide[:, ::2]
    assert not strided.flags.c_contiguous
    np.testing.assert_allclose(f(strided), softmax_of_relu(torch.from_numpy(strided.copy())).numpy(),
                               rtol=1e-6)
    transposed = torch.from_numpy(wide[:, :3].copy()).t()            # [3, 3] not contiguous
    g = compiled_for(compiled, softmax_of_relu, hytorch.TensorType([3, 3]))
    torch.testing.assert_close(g(transposed), softmax_of_relu(transposed.contiguous()))


def test_int64_tensors_scalars_and_tensors_together():
    f = hytorch.stage(lambda labels, k: (labels == k).sum(), hytorch.TensorType([6], torch.int64),
                      hytorch.TensorType([6], "int64"))
    labels = np.array([1, 2, 3, 1, 1, 0])
    assert int(f(labels, np.ones(6, dtype=np.int64))) == 3
    g = hytorch.stage(lambda x, n: x.sum().item() * n, hytorch.TensorType([2, 2]), int)
    assert g(np.ones((2, 2), np.float32), 3) == 12.0


def test_an_example_array_or_tensor_without_grad_is_a_tensor_parameter():
    program = hytorch.lms_compile(lambda x: F.relu(x), np.zeros((2, 3), np.float32))
    assert print_ir(program.node) == "(def <lambda> (in) (begin (begin (let x0 (call relu (in)) x0))))"
    assert hytorch.lms_compile(lambda x: F.relu(x), torch.zeros(2, 3)).node == program.node


def test_compile_ir_takes_tensor_types():
    f = hytorch.compile_ir("(def f (in) (begin (begin (let x0 (call relu (in)) x0))))",
                           hytorch.TensorType([3]))
    np.testing.assert_array_equal(f(np.array([-1.0, 0.5, 2.0], np.float32)), [0.0, 0.5, 2.0])


@pytest.mark.parametrize("argument, error, message", [
    (np.zeros((3, 2), np.float32), ValueError, "argument 1 has shape [3, 2]; the program was staged with [2, 3]"),
    (np.zeros((2, 3)), TypeError, "argument 1 holds float64; the program was staged with float32"),
    (torch.zeros(2, 3, dtype=torch.float16), TypeError, "argument 1 holds float16"),
    ([[0.0] * 3] * 2, TypeError, "argument 1 must be a tensor or NumPy array of shape [2, 3] (float32), not list"),
])
def test_a_wrong_argument_is_an_error_naming_it(compiled, argument, error, message):
    f = compiled_for(compiled, softmax_of_relu, hytorch.TensorType([2, 3]))
    with pytest.raises(error) as e:
        f(argument)
    assert message in str(e.value)


@pytest.mark.parametrize("shape, dtype, message", [
    ([2, -1], "float32", "sizes are at least 0"), ([2], torch.float16, "float32 or int64"),
    ("ab", "float32", "list of sizes"),
])
def test_a_bad_tensor_type_is_an_error(shape, dtype, message):
    with pytest.raises((TypeError, ValueError), match=message):
        hytorch.TensorType(shape, dtype)
