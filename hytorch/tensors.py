"""Staged tensors: stand-ins for torch tensors that emit the IR's tensor nodes.

A TensorRep implements PyTorch's `__torch_function__` protocol, so ordinary code runs on it
unchanged: `(F.relu x)`, `(torch.flatten x 1)` and an `nn.Linear` module called on it emit
`(call relu (x))`, a `view` and `(dot W x)` `(+ .. b)`, an `nn.Conv2d` `(call conv2d (x W b 1 1
0 0))`; the module's parameters are lifted into the staging run with PyTorch's own values (see
lift.py). A torch call that is its input itself (dropout in eval mode) emits nothing.

The ops and the torch functions they stand for are declared in the op table
(hytorch/ir/ops.hy); `stage_op` stages any of them. Python's operators are here: `+ - * /`
broadcast as torch does (an operand of size 1 along a dim is repeated by `broadcast_dim`
first), `@` is matmul, `x[0, 1:3]` narrows; and the torch functions of several ops
(COMPOSITES: cat and stack of any number of tensors are cats of two). Shapes are checked as the program stages,
by the table's rules, so a mismatch is a StagingError naming the .hy form that caused it.
"""
import importlib

import torch

from hytorch import builder
from hytorch.ir import types as shapes
from hytorch.ir.ops import OPS, Delegate, Identity, Unsupported, broadcast_shape, flatten_dims
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

    def repeat(self, *sizes):
        """`x.repeat(n, 1)`: copies along dimensions of size 1 (the blog's RNN repeats its
        `hid_init` of [1, hidden] over the batch); more sizes than dimensions add leading ones."""
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list, torch.Size)):
            sizes = tuple(sizes[0])
        if len(sizes) < self.type.ndim or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes):
            raise StagingError(f"repeat takes at least {self.type.ndim} positive integer counts "
                               f"known at staging time, got {list(sizes)}", user_location())
        x = self
        if len(sizes) > x.type.ndim:
            x = x.view([1] * (len(sizes) - x.type.ndim) + list(x.type.shape))
        for dim, n in enumerate(sizes):
            if n == 1:
                continue
            if x.type.shape[dim] != 1:
                raise StagingError(f"repeat copies along dimensions of size 1 only; dimension "
                                   f"{dim} of {shapes.show(x.type)} has {x.type.shape[dim]}",
                                   user_location())
            x = stage_op("repeat_dim", x, dim, n)
        return x

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

    def __truediv__(self, other):
        return _elementwise("/", self, other)

    def __rtruediv__(self, other):
        return _elementwise("/", other, self)

    def __neg__(self):
        return stage_op("scale", self, -1.0)

    def __matmul__(self, other):
        return stage_op("matmul", self, other)

    def __rmatmul__(self, other):
        return stage_op("matmul", other, self)

    @property
    def T(self):
        if self.type.ndim > 2:
            raise StagingError("`.T` of a staged tensor of more than 2 dims is not supported",
                               user_location())
        return stage_op("transpose", self)

    @property
    def mT(self):
        return stage_op("transpose", self, -2, -1)

    def unsqueeze(self, dim):
        return unsqueeze(self, dim)

    def squeeze(self, dim=None):
        return squeeze(self, dim)

    def __getitem__(self, index):
        return _index(self, index)

    def __eq__(self, other):
        return _compare(self, other)

    __hash__ = Staged.__hash__

    def _unsupported(self, what):
        raise StagingError(f"{what} of a staged tensor is not supported", user_location())

    def __floordiv__(self, other):
        self._unsupported("`//` and `%`")

    __rfloordiv__ = __mod__ = __floordiv__

    def __pow__(self, other):
        self._unsupported("`**`")

    def __len__(self):
        self._unsupported("`len`")


def stage_op(name, *args, **kwargs):
    """Stage the op `name` of the table on a torch call's arguments, e.g.
    stage_op("log_softmax", x, dim=1) emits `(call log_softmax (x 1))`."""
    op = OPS[name]
    operands = _checked(op.stage, *args, **kwargs)
    if isinstance(operands, Identity):
        return _tensor(operands.x, name)
    if isinstance(operands, Delegate):
        return _staged_delegate(operands)
    inputs = [None if x is None and input_name in op.optional else _tensor(x, name)
              for x, input_name in zip(operands, op.inputs)]
    attrs = operands[len(op.inputs):]
    ttype = _checked(op.result_type, [None if x is None else x.type for x in inputs], attrs)
    return _emit([CALL, Sym(name), [*(None if x is None else x.sym for x in inputs), *attrs]], ttype,
                 op.differentiable and any(x.requires_grad for x in inputs if x is not None))


def _staged_delegate(delegate):
    """Stage the op a table entry handed a torch call to, its Delegate operands first."""
    return stage_op(delegate.name, *(_staged_delegate(x) if isinstance(x, Delegate) else x
                                     for x in delegate.operands))


def _elementwise(op, a, b):
    """`a op b` of tensors (broadcast as torch does) or of a tensor and a number known at staging."""
    if scalar_kind(a) is not None or scalar_kind(b) is not None:
        return _with_scalar(op, a, b)
    a, b = _broadcast_operands(op, _tensor(a, op), _tensor(b, op))
    if op == "/":
        return stage_op("div", a, b)
    ttype = _checked(OPS[op].result_type, [a.type, b.type], [])
    return _emit([Sym(op), a.sym, b.sym], ttype, a.requires_grad or b.requires_grad)


def _divide(a, b, rounding_mode=None):
    """torch.div: true division only."""
    if rounding_mode is not None:
        raise StagingError(f"division with rounding_mode={rounding_mode!r} is not supported",
                           user_location())
    return _elementwise("/", a, b)


def _with_scalar(op, a, b):
    scalar_first = scalar_kind(a) is not None
    scalar, tensor = (a, b) if scalar_first else (b, a)
    if isinstance(scalar, Rep):
        raise StagingError(f"`{op}` of a staged tensor and a number computed at run time is not "
                           "supported (numbers known at staging are)", user_location())
    s = float(scalar)
    if op == "*":
        return stage_op("scale", tensor, s)
    if op == "+":
        return stage_op("add_scalar", tensor, s)
    if op == "-":
        return (stage_op("add_scalar", stage_op("scale", tensor, -1.0), s) if scalar_first
                else stage_op("add_scalar", tensor, -s))
    return stage_op("scalar_div", tensor, s) if scalar_first else stage_op("div_scalar", tensor, s)


def _broadcast_operands(op, a, b):
    """`a` and `b` as operands of `op`: as they are when its node takes them (equal shapes, or
    + of a Linear layer's bias), else each broadcast to the shape of the result."""
    if a.type.shape == b.type.shape:
        return a, b
    if op != "/":
        try:
            OPS[op].result_type([a.type, b.type], [])
            return a, b
        except shapes.ShapeError:
            pass
    shape = _checked(broadcast_shape, a.type.shape, b.type.shape, op)
    return _broadcast_to(a, b, shape), _broadcast_to(b, a, shape)


def _broadcast_to(x, other, shape):
    """x repeated along its dims of size 1 (and new leading ones) to `shape`, the shape x and
    `other` broadcast to: where x has size 1 and the shape does not, `other` has its size."""
    if x.type.ndim < len(shape):
        x = x.view(*([1] * (len(shape) - x.type.ndim)), *x.type.shape)
    for dim, size in enumerate(shape):
        if x.type.shape[dim] != size:
            x = stage_op("broadcast_dim", x, other, dim - len(shape))
    return x


def _index(x, index):
    """x[index] for ints, slices of step 1 and `...`: narrows, then a view without the dims an
    int picked."""
    items = list(index) if isinstance(index, tuple) else [index]
    if sum(item is Ellipsis for item in items) > 1:
        raise StagingError("an index can only have a single ellipsis ('...')", user_location())
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at:at + 1] = [slice(None)] * (x.type.ndim - len(items) + 1)
    if len(items) > x.type.ndim:
        raise StagingError(f"too many indices ({len(items)}) for a staged tensor of "
                           f"{x.type.ndim} dims", user_location())
    shape, picked = x.type.shape, []
    for dim, item in enumerate(items):
        size = shape[dim]
        if isinstance(item, int) and not isinstance(item, bool):
            if not -size <= item < size:
                raise StagingError(f"index {item} is out of range for dim {dim} of size {size}",
                                   user_location())
            x = stage_op("narrow", x, dim, item % size, 1)
            picked.append(dim)
        elif isinstance(item, slice) and all(v is None or (isinstance(v, int) and not isinstance(v, bool))
                                             for v in (item.start, item.stop, item.step)):
            start, stop, step = item.indices(size)
            if step != 1:
                raise StagingError("slices of a staged tensor with a step are not supported",
                                   user_location())
            if (start, stop) != (0, size):
                x = stage_op("narrow", x, dim, start, max(0, stop - start))
        else:
            what = ("a tensor" if isinstance(item, TensorRep) else "a number computed at run time"
                    if isinstance(item, Rep) else type(item).__name__)
            raise StagingError(f"indexing a staged tensor with {what} is not supported (ints and "
                               "slices known at staging are)", user_location())
    if picked:
        x = x.view(*(n for dim, n in enumerate(x.type.shape) if dim not in picked))
    return x


def unsqueeze(x, dim):
    """A view with a dim of size 1 inserted at `dim`."""
    x = _tensor(x, "unsqueeze")
    ndim = x.type.ndim + 1
    if not (isinstance(dim, int) and -ndim <= dim < ndim):
        raise StagingError(f"unsqueeze: dim {dim!r} is out of range for a {ndim - 1}-dimensional "
                           "tensor", user_location())
    at = dim % ndim
    return x.view(*x.type.shape[:at], 1, *x.type.shape[at:])


def squeeze(x, dim=None):
    """A view without the dims of size 1 (all, or those of `dim`, an int or a tuple)."""
    x = _tensor(x, "squeeze")
    ndim = max(x.type.ndim, 1)
    dims = range(x.type.ndim) if dim is None else dim if isinstance(dim, (tuple, list)) else (dim,)
    if not all(isinstance(d, int) and -ndim <= d < ndim for d in dims):
        raise StagingError(f"squeeze: dim {dim!r} is out of range for a {x.type.ndim}-dimensional "
                           "tensor", user_location())
    dropped = {d % ndim for d in dims if x.type.shape[d % ndim] == 1} if x.type.ndim else set()
    return x.view(*(n for d, n in enumerate(x.type.shape) if d not in dropped))


def cat(tensors, dim=0, *, out=None):
    """torch.cat: one cat of two after the other."""
    if out is not None or not isinstance(tensors, (list, tuple)) or not tensors:
        raise StagingError("cat needs a non-empty list of tensors (and no out=)", user_location())
    result = _tensor(tensors[0], "cat")
    for x in tensors[1:]:
        result = stage_op("cat", result, _tensor(x, "cat"), dim)
    return result


def stack(tensors, dim=0, *, out=None):
    """torch.stack: each tensor viewed with a dim of size 1 at `dim`, then cat."""
    if out is not None or not isinstance(tensors, (list, tuple)) or not tensors:
        raise StagingError("stack needs a non-empty list of tensors (and no out=)", user_location())
    xs = [_tensor(x, "stack") for x in tensors]
    ndim = xs[0].type.ndim + 1
    if not -ndim <= dim < ndim:
        raise StagingError(f"stack: dim {dim} is out of range for {ndim - 1}-dimensional tensors",
                           user_location())
    at = dim % ndim
    return cat([unsqueeze(x, at) for x in xs], at)


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
    "div": _divide,
    "==": _compare,
    "view": TensorRep.view,
}
# Torch functions that are several ops.
COMPOSITES = {"torch.nn.functional.linear": linear,
              "torch.nn.functional.cross_entropy": cross_entropy,
              "torch.flatten": flatten, "torch.Tensor.flatten": flatten,
              "torch.cat": cat, "torch.concat": cat, "torch.stack": stack,
              "torch.unsqueeze": unsqueeze, "torch.Tensor.unsqueeze": unsqueeze,
              "torch.squeeze": squeeze, "torch.Tensor.squeeze": squeeze}


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
