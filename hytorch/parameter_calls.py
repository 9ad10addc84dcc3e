"""Torch calls on a module's parameters while staging are staged, like calls on staged tensors.

Ordinary code runs while staging, so `(self.hid-to-hid self.hid-init)` or `(.t self.weight)`,
where no staged value takes part, would be computed by torch there and then and become a
constant of the compiled code, never trained. A torch function mode, active while a program
stages, sends each torch call that has a trainable parameter among its arguments, and that
the op table stages (or that staged tensors have as a method: `view`, `flatten`, ...), to the
staged tensors instead, with the parameters lifted. Other torch calls run as before.

    with staging_parameter_calls():
        ...   # F.linear(hid_init, W, b) with hid_init an nn.Parameter emits (dot ...) (+ ...)
"""
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from hytorch.errors import StagingError
from hytorch.lift import lift_tensor
from hytorch.source_location import user_location
from hytorch.tensors import TORCH_FUNCTIONS, TensorRep


def _trainable(x):
    return isinstance(x, torch.nn.Parameter) and x.requires_grad


def _lifted(x):
    return lift_tensor(x) if isinstance(x, torch.Tensor) else x


class _StageParameterCalls(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        leaves, _ = tree_flatten((args, kwargs))
        if not any(_trainable(x) for x in leaves):
            return func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        # a staged tensor's public methods only: hashing or printing a parameter stays eager
        method = None if name.startswith("_") else getattr(TensorRep, name, None)
        if func not in TORCH_FUNCTIONS and not callable(method):
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
