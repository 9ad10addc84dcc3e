"""The parameters of a staged function: their IR names and their staged stand-ins.

    param_names(1) == ["in"];  param_names(2) == ["in1", "in2"]
"""
from hytorch.errors import StagingError
from hytorch.stand_ins import stand_in
from hytorch.values import Rep

SCALAR_KINDS = {int: "int", float: "float", bool: "bool"}


def param_names(n):
    """`in` for one parameter, `in1 ... inN` for several (as snek-LMS printed them)."""
    return ["in"] if n == 1 else [f"in{i + 1}" for i in range(n)]


def describe_type(t):
    return getattr(t, "__name__", repr(t))


def is_object_argument(arg_type):
    """An argument given as an object (a module, optimizer, loader, tensor), not a type."""
    return not isinstance(arg_type, type)


def staged_argument(arg_type, sym, st, position):
    """The staged value of parameter `position`: a staged scalar for the types int, float
    and bool; for an object (a module, optimizer, data loader, tensor), its stand-in, whose
    values the compiled code reads from the object passed in that position at each call."""
    if arg_type in SCALAR_KINDS:
        return Rep(sym, SCALAR_KINDS[arg_type])
    if is_object_argument(arg_type):
        return stand_in(arg_type, position)
    raise StagingError(f"cannot stage a parameter of type {describe_type(arg_type)}; give int, "
                       "float or bool, or the object itself (a module, optimizer, loader, tensor)")
