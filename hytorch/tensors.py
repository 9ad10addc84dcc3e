"""Staged tensors: stand-ins for torch tensors that emit the IR's tensor nodes.

A TensorRep implements PyTorch's `__torch_function__` protocol, so ordinary code runs on it
unchanged: `(F.relu x)`, `(torch.flatten x 1)` and an `nn.Linear` module called on it emit
`(call relu (x))`, a `view` and `(dot W x)` `(+ .. b)`; the module's parameters are lifted
into the staging run with PyTorch's own values (see lift.py).

Shapes are checked as the program stages (hytorch/ir/types.hy), so a mismatch is a
StagingError naming the .hy form that caused it.
"""
import torch
import torch.nn.functional as F

from hytorch import builder
from hytorch.ir import types as shapes
from hytorch.ir.syntax import Sym
from hytorch.errors import StagingError
from hytorch.source_location import user_location
from hytorch.values import Rep, Staged, scalar_kind

CALL = Sym("call")
_TORCH_DTYPES = {"float32": torch.float32, "int64": torch.int64}


def _checked(rule, *args):
    try:
        return rule(*args)
    except shapes.ShapeError as e:
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
        ttype = _checked(shapes.view_type, self.type, dims)
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

    def relu(self):
        return relu(self)

    def sigmoid(self):
        return unary("sigmoid", self)

    def tanh(self):
        return unary("tanh", self)

    def sum(self, *args, **kwargs):
        return reduce_all("sum", self, *args, **kwargs)

    def mean(self, *args, **kwargs):
        return reduce_all("mean", self, *args, **kwargs)

    def argmax(self, dim=None, keepdim=False):
        if dim is None or keepdim:
            raise StagingError("argmax needs a dim (and keepdim=False) on staged tensors",
                               user_location())
        ttype = _checked(shapes.argmax_type, self.type, dim)
        return _emit([CALL, Sym("argmax"), [self.sym, dim]], ttype)

    def eq(self, other):
        return _compare(self, other)

    def log_softmax(self, dim):
        return log_softmax(self, dim)

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


def _elementwise(op, a, b):
    if scalar_kind(a) is not None or scalar_kind(b) is not None:
        scalar, tensor = (a, b) if scalar_kind(a) is not None else (b, a)
        if op != "*" or isinstance(scalar, Rep):
            raise StagingError(f"`{op}` of a staged tensor and a number is supported only as "
                               "multiplication by a constant", user_location())
        return _emit([CALL, Sym("scale"), [tensor.sym, float(scalar)]], tensor.type,
                     tensor.requires_grad)
    a, b = _tensor(a, op), _tensor(b, op)
    ttype = _checked(shapes.elementwise_type, a.type, b.type, {"+": "add", "-": "subtract",
                                                               "*": "multiply"}[op])
    _check_compiled_elementwise(op, a.type, b.type)
    return _emit([Sym(op), a.sym, b.sym], ttype, a.requires_grad or b.requires_grad)


def _is_row_vector_of(v, x):
    return v.ndim == 1 and x.ndim >= 2 and x.shape[-1] == v.shape[0]


def _check_compiled_elementwise(op, a, b):
    """What backend/c_tensor.hy compiles of the shapes the rule allows, until it broadcasts
    more: float32 tensors of one shape, or `+` of a row vector."""
    if a.dtype != "float32" or b.dtype != "float32":
        raise StagingError(f"`{op}` of tensors needs float32 tensors, got {shapes.show(a)} and "
                           f"{shapes.show(b)}", user_location())
    if not (a.shape == b.shape
            or (op == "+" and (_is_row_vector_of(a, b) or _is_row_vector_of(b, a)))):
        raise StagingError(f"`{op}` of tensors {shapes.show(a)} and {shapes.show(b)} is not "
                           "supported (equal shapes, or + of a row vector)", user_location())


def _compare(a, b):
    a, b = _tensor(a, "=="), _tensor(b, "==")
    ttype = _checked(shapes.compare_type, a.type, b.type)
    if a.type.shape != b.type.shape or "float32" in (a.type.dtype, b.type.dtype):
        raise StagingError(f"`==` of tensors {shapes.show(a.type)} and {shapes.show(b.type)} is "
                           "not supported (int64 tensors of one shape, e.g. predictions and "
                           "labels)", user_location())
    return _emit([Sym("=="), a.sym, b.sym], ttype)


def linear(x, weight, bias=None):
    x, weight = _tensor(x, "linear"), _tensor(weight, "linear")
    y = _emit([Sym("dot"), weight.sym, x.sym], _checked(shapes.dot_type, weight.type, x.type),
              x.requires_grad or weight.requires_grad)
    return y if bias is None else y + _tensor(bias, "linear")


def unary(name, x):
    x = _tensor(x, name)
    return _emit([CALL, Sym(name), [x.sym]], _checked(shapes.unary_type, x.type, name),
                 x.requires_grad)


def relu(x, inplace=False):
    return unary("relu", x)


def log_softmax(x, dim=None, _stacklevel=3, dtype=None):
    x = _tensor(x, "log_softmax")
    if dim is None or dtype is not None:
        raise StagingError("log_softmax needs dim= (and no dtype) on staged tensors", user_location())
    ttype = _checked(shapes.last_dim_type, x.type, dim, "log_softmax")
    return _emit([CALL, Sym("log_softmax"), [x.sym, dim]], ttype, x.requires_grad)


def softmax(x, dim=None, _stacklevel=3, dtype=None):
    x = _tensor(x, "softmax")
    if dim is None or dtype is not None:
        raise StagingError("softmax needs dim= (and no dtype) on staged tensors", user_location())
    ttype = _checked(shapes.last_dim_type, x.type, dim, "softmax")
    return _emit([CALL, Sym("softmax"), [x.sym, dim]], ttype, x.requires_grad)


def _reduction(reduction, size_average=None, reduce=None):
    if size_average is not None or reduce is not None:
        raise StagingError("size_average/reduce are deprecated; use reduction=", user_location())
    if reduction not in ("mean", "sum"):
        raise StagingError(f"reduction={reduction!r} is not supported (use 'mean' or 'sum')",
                           user_location())
    return reduction == "mean"


def nll_loss(logp, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    logp, target = _tensor(logp, "nll_loss"), _tensor(target, "nll_loss")
    if weight is not None:
        raise StagingError("nll_loss with class weights is not supported", user_location())
    mean = _reduction(reduction, size_average, reduce)
    ttype = _checked(shapes.nll_loss_type, logp.type, target.type)
    return _emit([CALL, Sym("nll_loss"), [logp.sym, target.sym, mean]], ttype, logp.requires_grad)


def cross_entropy(x, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    if label_smoothing:
        raise StagingError("cross_entropy with label_smoothing is not supported", user_location())
    return nll_loss(log_softmax(x, dim=-1), target, weight, size_average, ignore_index, reduce,
                    reduction)


def mse_loss(x, target, size_average=None, reduce=None, reduction="mean", weight=None):
    x, target = _tensor(x, "mse_loss"), _tensor(target, "mse_loss")
    if reduction != "mean" or size_average is not None or reduce is not None or weight is not None:
        raise StagingError("mse_loss is supported with reduction='mean' only", user_location())
    ttype = _checked(shapes.mse_loss_type, x.type, target.type)
    return _emit([CALL, Sym("mse_loss"), [x.sym, target.sym]], ttype,
                 x.requires_grad or target.requires_grad)


def reduce_all(name, x, dim=None, keepdim=False, dtype=None):
    x = _tensor(x, name)
    if dim is not None or keepdim or dtype is not None:
        raise StagingError(f"{name} over a dim is not supported on staged tensors; "
                           f"{name} of the whole tensor is", user_location())
    ttype = _checked(shapes.reduce_type, x.type, name)
    return _emit([CALL, Sym(name), [x.sym]], ttype, x.requires_grad)


def flatten(x, start_dim=0, end_dim=-1):
    x = _tensor(x, "flatten")
    if end_dim not in (-1, x.type.ndim - 1):
        raise StagingError("flatten is supported up to the last dimension only", user_location())
    return x.view(*shapes.flatten_dims(x.type, start_dim))


TORCH_FUNCTIONS = {
    F.linear: linear,
    F.relu: relu, torch.relu: relu, torch.Tensor.relu: relu,
    F.log_softmax: log_softmax, torch.log_softmax: log_softmax,
    F.softmax: softmax, torch.softmax: softmax,
    F.nll_loss: nll_loss,
    F.cross_entropy: cross_entropy,
    F.mse_loss: mse_loss,
    torch.sigmoid: lambda x: unary("sigmoid", x), F.sigmoid: lambda x: unary("sigmoid", x),
    torch.tanh: lambda x: unary("tanh", x), F.tanh: lambda x: unary("tanh", x),
    torch.flatten: flatten,
    torch.sum: lambda x, *a, **k: reduce_all("sum", x, *a, **k),
    torch.mean: lambda x, *a, **k: reduce_all("mean", x, *a, **k),
    torch.argmax: lambda x, dim=None, keepdim=False: _tensor(x, "argmax").argmax(dim, keepdim),
    torch.add: lambda a, b: _elementwise("+", a, b),
    torch.sub: lambda a, b: _elementwise("-", a, b),
    torch.mul: lambda a, b: _elementwise("*", a, b),
    torch.eq: _compare,
}
