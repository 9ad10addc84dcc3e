"""Staged tensors: stand-ins for torch tensors that emit the IR's tensor nodes.

A TensorRep implements PyTorch's `__torch_function__` protocol, so ordinary code runs on it
unchanged: `(F.relu x)`, `(torch.flatten x 1)` and an `nn.Linear` module called on it emit
`(call relu (x))`, a `view` and `(dot W x)` `(+ .. b)`, an `nn.Conv2d` `(call conv2d (x W b 1 1
0 0))`; the module's parameters are lifted into the staging run with PyTorch's own values (see
lift.py). A torch call that is its input itself (dropout in eval mode) emits nothing.

The ops and the torch functions they stand for are declared in the op table
(hytorch/ir/ops.hy); `stage_op` stages any of them. Shapes are checked as the program stages,
by the table's rules, so a mismatch is a StagingError naming the .hy form that caused it.
"""
import importlib

import torch

from hytorch import builder
from hytorch.ir import types as shapes
from hytorch.ir.ops import OPS, Identity, Unsupported, flatten_dims
from hytorch.ir.syntax import Sym
from hytorch.errors import StagingError
from hytorch.source_location import user_location
from hytorch.values import Rep, Staged, scalar_kind

CALL = Sym("call")
_TORCH_DTYPES = {"float32": torch.float32, "int64": torch.int64}


def _checked(rule, *args, **kwargs):
    """`rule(*args, **kwargs)`, a shape rule or a table entry's `stage`, its errors a StagingError."""
    try:
        return rule(*args, **kwargs)
    except (shapes.ShapeError, Unsupported) as e:
        raise StagingError(str(e), user_location()) from None


def _emit(node, ttype, requires_grad=False):
    return TensorRep(builder.current().emit(node), ttype, requires_grad)


def _tensor(x, what):
    if isinstance(x, TensorRep):
        return x
    if isinstance(x, torch.Tensor):
        from hytorch.lift import lift_tensor
        return lift_tensor(x)
    raise StagingError(f"{what} needs a tensor, got {type(x).__name__}", user_location())


class TensorRep(Staged):
    """A staged tensor: an IR symbol with a TensorType (shape, dtype, batch tag)."""

    kind = "tensor"

    def __init__(self, sym, ttype, requires_grad=False):
        super().__init__(sym)
        self.type = ttype
        self.requires_grad = requires_grad

    # ---- what Python code may ask of a tensor while staging
    @property
    def shape(self):
        return torch.Size(self.type.shape)

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def dim(self):
        return self.type.ndim

    @property
    def dtype(self):
        return _TORCH_DTYPES[self.type.dtype]

    def __repr__(self):
        return f"<staged tensor {self.sym} {shapes.show(self.type)}>"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        handler = TORCH_FUNCTIONS.get(func)
        if handler is None:
            name = getattr(func, "__name__", None) or repr(func)
            module = getattr(func, "__module__", None) or "torch"
            raise StagingError(f"`{module}.{name}` is not supported on staged tensors",
                               user_location())
        return handler(*args, **(kwargs or {}))

    # ---- tensor methods
    def view(self, *dims):
        if len(dims) == 1 and isinstance(dims[0], (tuple, list, torch.Size)):
            dims = tuple(dims[0])
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
            raise StagingError("view takes integer sizes known at staging time", user_location())
        ttype = _checked(OPS["view"].result_type, [self.type], [dims])
        return _emit([CALL, self.sym, Sym("view"), list(dims)], ttype, self.requires_grad)

    reshape = view

    def flatten(self, start_dim=0, end_dim=-1):
        return flatten(self, start_dim, end_dim)

    def backward(self):
        if self.type.shape != () or self.type.dtype != "float32":
            raise StagingError(f"backward needs a scalar float loss, got {shapes.show(self.type)}",
                               user_location())
        builder.current().emit([CALL, self.sym, Sym("backward")])

    def item(self):
        if self.type.numel != 1:
            raise StagingError(f"item needs a one-element tensor, got {shapes.show(self.type)}",
                               user_location())
        kind = "float" if self.type.dtype == "float32" else "int"
        return Rep(builder.current().emit([Sym("array-get"), self.sym, Sym("data"), 0]), kind)

    def __add__(self, other):
        return _elementwise("+", self, other)

    def __radd__(self, other):
        return _elementwise("+", other, self)

    def __sub__(self, other):
        return _elementwise("-", self, other)

    def __rsub__(self, other):
        return _elementwise("-", other, self)

    def __mul__(self, other):
        return _elementwise("*", self, other)

    def __rmul__(self, other):
        return _elementwise("*", other, self)

    def __eq__(self, other):
        return _compare(self, other)

    __hash__ = Staged.__hash__

    def _unsupported(self, what):
        raise StagingError(f"{what} of a staged tensor is not supported", user_location())

    def __truediv__(self, other):
        self._unsupported("division (`/`)")

    __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __truediv__

    def __pow__(self, other):
        self._unsupported("`**`")

    def __neg__(self):
        self._unsupported("negation")

    def __getitem__(self, index):
        self._unsupported("indexing")

    def __len__(self):
        self._unsupported("`len`")

    def __matmul__(self, other):
        self._unsupported("`@` (use nn.Linear or F.linear)")


def stage_op(name, *args, **kwargs):
    """Stage the op `name` of the table on a torch call's arguments, e.g.
    stage_op("log_softmax", x, dim=1) emits `(call log_softmax (x 1))`."""
    op = OPS[name]
    operands = _checked(op.stage, *args, **kwargs)
    if isinstance(operands, Identity):
        return _tensor(operands.x, name)
    inputs = [None if x is None and input_name in op.optional else _tensor(x, name)
              for x, input_name in zip(operands, op.inputs)]
    attrs = operands[len(op.inputs):]
    ttype = _checked(op.result_type, [None if x is None else x.type for x in inputs], attrs)
    return _emit([CALL, Sym(name), [*(None if x is None else x.sym for x in inputs), *attrs]], ttype,
                 op.differentiable and any(x.requires_grad for x in inputs if x is not None))


def _elementwise(op, a, b):
    if scalar_kind(a) is not None or scalar_kind(b) is not None:
        scalar, tensor = (a, b) if scalar_kind(a) is not None else (b, a)
        if op != "*" or isinstance(scalar, Rep):
            raise StagingError(f"`{op}` of a staged tensor and a number is supported only as "
                               "multiplication by a constant", user_location())
        return stage_op("scale", tensor, float(scalar))
    a, b = _tensor(a, op), _tensor(b, op)
    ttype = _checked(OPS[op].result_type, [a.type, b.type], [])
    return _emit([Sym(op), a.sym, b.sym], ttype, a.requires_grad or b.requires_grad)


def _compare(a, b):
    a, b = _tensor(a, "=="), _tensor(b, "==")
    ttype = _checked(OPS["=="].result_type, [a.type, b.type], [])
    return _emit([Sym("=="), a.sym, b.sym], ttype)


def linear(x, weight, bias=None):
    x, weight = _tensor(x, "linear"), _tensor(weight, "linear")
    y = _emit([Sym("dot"), weight.sym, x.sym], _checked(OPS["dot"].result_type, [weight.type, x.type], []),
              x.requires_grad or weight.requires_grad)
    return y if bias is None else y + _tensor(bias, "linear")


def cross_entropy(x, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    if label_smoothing:
        raise StagingError("cross_entropy with label_smoothing is not supported", user_location())
    return stage_op("nll_loss", stage_op("log_softmax", x, dim=-1), target, weight, size_average,
                    ignore_index, reduce, reduction)


def flatten(x, start_dim=0, end_dim=-1):
    x = _tensor(x, "flatten")
    if end_dim not in (-1, x.type.ndim - 1):
        raise StagingError("flatten is supported up to the last dimension only", user_location())
    return x.view(*flatten_dims(x.type, start_dim))


def resolve(dotted):
    """The torch callable a dotted name of the op table stands for:
    resolve("torch.Tensor.relu") is torch.Tensor.relu."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attr in parts[split:]:
            target = getattr(target, attr)
        return target
    raise ImportError(f"no module in {dotted!r}")


# How the table's ops that are not `(call NAME (...))` nodes stage.
BESPOKE = {
    "+": lambda a, b: _elementwise("+", a, b),
    "-": lambda a, b: _elementwise("-", a, b),
    "*": lambda a, b: _elementwise("*", a, b),
    "==": _compare,
    "view": TensorRep.view,
}
# Torch functions that are several ops.
COMPOSITES = {"torch.nn.functional.linear": linear,
              "torch.nn.functional.cross_entropy": cross_entropy,
              "torch.flatten": flatten, "torch.Tensor.flatten": flatten}


def _handler(op):
    if op.name in BESPOKE:
        return BESPOKE[op.name]

    def handler(*args, **kwargs):
        return stage_op(op.name, *args, **kwargs)

    handler.__name__ = handler.__qualname__ = op.name
    return handler


_HANDLERS = {name: _handler(op) for name, op in OPS.items()}


def _torch_functions():
    """Each torch callable the op table names, and the function staging it."""
    named = {name: _HANDLERS[op.name] for op in OPS.values() for name in op.torch}
    return {resolve(name): handler for name, handler in {**named, **COMPOSITES}.items()}


def _add_methods():
    """A staged tensor's methods: those the table names as torch.Tensor's (x.relu(), ...)."""
    for op in OPS.values():
        for name in op.torch:
            owner, _, method = name.rpartition(".")
            if owner == "torch.Tensor" and method not in vars(TensorRep):
                setattr(TensorRep, method, _HANDLERS[op.name])


TORCH_FUNCTIONS = _torch_functions()
_add_methods()
