"""Torch calls on a module's parameters while staging are staged, like calls on staged tensors.

Ordinary code runs while staging, so `(self.hid-to-hid self.hid-init)` or `(.t self.weight)`,
where no staged value takes part, would be computed by torch there and then and become a
constant of the compiled code, never trained. A torch function mode, active while a program
stages, sends each torch call that has a parameter among its arguments, and that
the op table stages (or that staged tensors have as a method or operator: `view`, `-`, `[0]`,
...), to the staged tensors instead, with the parameters lifted. So does a call on a frozen
parameter or on a buffer of a module passed in: the compiled code reads them at each call.
Other torch calls run as before.

    with staging_parameter_calls():
        ...   # F.linear(hid_init, W, b) with hid_init an nn.Parameter emits (dot ...) (+ ...)
"""
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from hytorch import builder
from hytorch.errors import StagingError
from hytorch.lift import lift_tensor
from hytorch.source_location import user_location
from hytorch.tensors import TORCH_FUNCTIONS, TensorRep


# The operators of a staged tensor that a torch call on a parameter may stand for, and torch's
# names of some of them.
_OPERATORS = {f"__{name}__" for name in ("neg", "add", "radd", "sub", "rsub", "mul", "rmul",
                                        "truediv", "rtruediv", "matmul", "rmatmul", "getitem")}
_ALIASES = {"neg": "__neg__", "negative": "__neg__"}
_PROPERTIES = {"T", "mT"}   # (reading a parameter's shape or dtype stays eager)


def _model_state(x):
    """A module's parameter (trained or frozen) or buffer: what the compiled code reads at
    each call, so a torch call on it must be staged, not computed once."""
    return isinstance(x, torch.nn.Parameter) or (
        isinstance(x, torch.Tensor) and id(x) in builder.current().module_buffers)


def _staged_method(func):
    """What a staged tensor does for the torch method `func`: its public method or operator
    of that name, or the getter of its property (`.T`); None else (hashing or printing a
    parameter stays eager)."""
    name = getattr(func, "__name__", "")
    if name == "__get__":   # a property of torch.Tensor: the descriptor names it
        prop = getattr(getattr(func, "__self__", None), "__name__", "")
        return (lambda x: getattr(x, prop)) if prop in _PROPERTIES else None
    name = _ALIASES.get(name, name)
    if name.startswith("_") and name not in _OPERATORS:
        return None
    method = getattr(TensorRep, name, None)
    return method if callable(method) else None


def _lifted(x):
    return lift_tensor(x) if isinstance(x, torch.Tensor) else x


class _StageParameterCalls(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        leaves, _ = tree_flatten((args, kwargs))
        if not any(_model_state(x) for x in leaves):
            return func(*args, **kwargs)
        method = _staged_method(func)
        if func not in TORCH_FUNCTIONS and method is None:
            return func(*args, **kwargs)   # e.g. reading a shape: nothing to stage
        args, kwargs = tree_map(_lifted, (args, kwargs))
        if func in TORCH_FUNCTIONS:
            return TORCH_FUNCTIONS[func](*args, **kwargs)
        if not isinstance(args[0], TensorRep):
            raise StagingError(f"`{func.__name__}` of a parameter cannot be staged", user_location())
        return method(*args, **kwargs)


def staging_parameter_calls():
    """The context in which torch calls on trainable parameters are staged."""
    return _StageParameterCalls()
