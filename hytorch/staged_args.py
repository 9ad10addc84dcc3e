"""The parameters of a staged function: their IR names and their staged stand-ins.

    param_names(1) == ["in"];  param_names(2) == ["in1", "in2"]
"""
from hytorch.errors import StagingError
from hytorch.values import Rep

SCALAR_KINDS = {int: "int", float: "float", bool: "bool"}


def param_names(n):
    """`in` for one parameter, `in1 ... inN` for several (as snek-LMS printed them)."""
    return ["in"] if n == 1 else [f"in{i + 1}" for i in range(n)]


def describe_type(t):
    return getattr(t, "__name__", repr(t))


def staged_argument(arg_type, sym, st):
    """The staged value a parameter of `arg_type` stands for while staging."""
    if arg_type in SCALAR_KINDS:
        return Rep(sym, SCALAR_KINDS[arg_type])
    stand_in = getattr(arg_type, "__staged_argument__", None)
    if stand_in is not None:
        return stand_in(sym, st)
    raise StagingError(f"cannot stage a parameter of type {describe_type(arg_type)}; "
                       "use int, float, bool or a hytorch.Tensor type")
