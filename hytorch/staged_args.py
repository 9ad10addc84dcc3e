"""The parameters of a staged function: their types, IR names and staged stand-ins.

    param_names(1) == ["in"];  param_names(2) == ["in1", "in2"]
    TensorType([4, 16])            # a float32 tensor parameter of shape [4, 16]
    ListOf(TensorType([4, 16]))    # a list of them, as long as the caller's
"""
from hytorch.errors import StagingError
from hytorch.ir import types as ir_types
from hytorch.staged_list import StagedList
from hytorch.stand_ins import load_staged_tensors, stand_in
from hytorch.values import Rep

SCALAR_KINDS = {int: "int", float: "float", bool: "bool"}
TENSOR_DTYPES = ("float32", "int64")


class TensorType:
    """The type of a tensor parameter: its shape and element type (float32 or int64, given as
    a torch or NumPy dtype or its name). The compiled function takes a torch tensor or a NumPy
    array of that shape and type in its place.

        >>> TensorType([4, 16])
        TensorType([4, 16], float32)
        >>> TensorType((2,), "int64").dtype
        'int64'
    """

    def __init__(self, shape, dtype="float32"):
        try:
            self.shape = tuple(int(d) for d in shape)
        except (TypeError, ValueError):
            raise TypeError(f"a tensor's shape is a list of sizes, got {shape!r}") from None
        if any(d < 0 or isinstance(d, bool) for d in self.shape):
            raise ValueError(f"a tensor's sizes are at least 0, got {list(shape)}")
        self.dtype = dtype_name(dtype)
        self.ir_type()   # a ShapeError (a ValueError) for a tensor no machine holds

    @classmethod
    def of(cls, example):
        """The type of an example tensor or NumPy array."""
        return cls(example.shape, example.dtype)

    def ir_type(self):
        return ir_types.TensorType(self.shape, self.dtype)

    def __eq__(self, other):
        return isinstance(other, TensorType) and (self.shape, self.dtype) == (other.shape, other.dtype)

    def __hash__(self):
        return hash((self.shape, self.dtype))

    def __repr__(self):
        return f"TensorType({list(self.shape)}, {self.dtype})"


class ListOf:
    """The type of a parameter that is a list of tensors of one type, its length known only
    when the compiled function is called: a staged `for` over it is a loop of the compiled
    code, run as many times as the list given has elements. The compiled function takes a
    list or tuple of tensors or NumPy arrays, or one tensor or array whose first dimension
    runs over the list.

        >>> ListOf(TensorType([4, 16]))
        ListOf(TensorType([4, 16], float32))
    """

    def __init__(self, element):
        element_type = tensor_parameter_type(element)
        if element_type is None:
            raise TypeError("ListOf takes the type of the list's elements: a hytorch.TensorType "
                            f"(or an example tensor or NumPy array), not {element!r:.60}")
        self.element = element_type

    def ir_type(self):
        return ir_types.ListType(self.element.ir_type())

    def __eq__(self, other):
        return isinstance(other, ListOf) and self.element == other.element

    def __hash__(self):
        return hash(("list", self.element))

    def __repr__(self):
        return f"ListOf({self.element!r})"


def dtype_name(dtype):
    """"float32" or "int64" for a torch dtype, a NumPy dtype or their name; ValueError else."""
    name = str(getattr(dtype, "name", dtype)).removeprefix("torch.")
    if name not in TENSOR_DTYPES:
        raise ValueError(f"a tensor parameter is float32 or int64, not {dtype}")
    return name


def is_array(obj):
    """A NumPy array (checked without importing NumPy)."""
    return type(obj).__module__ == "numpy" and type(obj).__name__ == "ndarray"


def tensor_parameter_type(arg_type):
    """The TensorType a parameter given as `arg_type` has, or None when it is not a tensor
    parameter: a TensorType, an example NumPy array, or an example torch tensor that does not
    require grad (one that does is lifted, so that an optimizer can train it)."""
    if isinstance(arg_type, TensorType):
        return arg_type
    if is_array(arg_type):
        return TensorType.of(arg_type)
    if type(arg_type).__module__.startswith("torch") and hasattr(arg_type, "requires_grad") \
            and not arg_type.requires_grad:
        return TensorType.of(arg_type)
    return None


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
    and bool; a staged tensor for a tensor type (see tensor_parameter_type); for an object (a
    module, optimizer, data loader, a tensor that requires grad), its stand-in, whose values
    the compiled code reads from the object passed in that position at each call; for a
    ListOf, a StagedList."""
    tensor_type = tensor_parameter_type(arg_type)
    if tensor_type is not None:
        return load_staged_tensors()(sym, tensor_type.ir_type())
    if isinstance(arg_type, ListOf):
        load_staged_tensors()
        return StagedList(sym, arg_type.ir_type())
    if isinstance(arg_type, type) and arg_type in SCALAR_KINDS:
        return Rep(sym, SCALAR_KINDS[arg_type])
    if is_object_argument(arg_type):
        return stand_in(arg_type, position)
    raise StagingError(f"cannot stage a parameter of type {describe_type(arg_type)}; give int, "
                       "float, bool or a hytorch.TensorType, or the object itself (a module, "
                       "optimizer, loader, tensor)")
