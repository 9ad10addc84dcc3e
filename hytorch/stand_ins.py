"""What a Python object is while staging: its stand-in. Data loaders and torch optimizers,
modules and tensors are lifted into the staging run (see lift.py); anything else stands for
itself.

    (stand_in model)       ; lifts the model's parameters, returns the model
    (stand_in optimizer)   ; a StagedOptimizer: its `zero_grad` and `step` emit IR
    (stand_in 3)           ; 3
"""
import sys

from hytorch import builder, lift
from hytorch.values import Staged


def load_staged_tensors():
    """The class of staged tensors, hytorch.tensors.TensorRep, registered with lift.py. The
    objects lifted here hold tensors, staged by hytorch.tensors. It imports torch, an optional
    dependency, so it is loaded here, when the first such object is lifted."""
    from hytorch import tensors
    lift.use_staged_tensors(tensors.TensorRep)
    return tensors.TensorRep


def _is_loader(obj):
    data = sys.modules.get("hytorch.data")
    return data is not None and isinstance(obj, data.BatchOrder)


def _is_optimizer(obj):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.optim.Optimizer)


def _is_module(obj):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _is_tensor(obj):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def _lifter(obj, position):
    """The lift function for `obj`, or None if it stands for itself. A tensor is lifted here
    only as an argument (`position`); tensor operations lift the other tensors they meet."""
    if _is_loader(obj):
        return lift.lift_loader
    if _is_optimizer(obj):
        return lift.lift_optimizer
    if _is_module(obj):
        return lift.lift_module
    if _is_tensor(obj) and position is not None:
        return lift.lift_tensor
    return None


def stand_in(obj, position=None):
    """What a Python object is while staging: loaders and optimizers are lifted, a module's
    parameters are lifted (the module itself stays), anything else is itself."""
    if builder.current() is None or isinstance(obj, Staged):
        return obj
    lift_object = _lifter(obj, position)
    if lift_object is None:
        return obj
    load_staged_tensors()
    return lift_object(obj, position)
