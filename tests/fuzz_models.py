"""Random valid models, NNSmith's way: the op table's shape rules (hytorch/ir/ops.hy) say
which ops and arguments fit the values built so far, so every drawn model stages.

    spec = data.draw(model_specs())       # a ModelSpec: input, nodes, loss
    model = RandomModel(spec, seed)       # a torch nn.Module computing it
    loss = model.loss(x, target)          # eagerly, or inside a staged training step
    print(spec.describe())                # the model as readable Python, for a reproducer

A model is a small DAG over its input x (an image [N, C, H, W] or a matrix [N, F]): each
node applies one op to an earlier value (mostly the latest, sometimes an older one; joins
are + - * of two values of one shape), with its own parameters or, sometimes, an earlier
node's of the same shape (a weight used twice). Ops with a module form (nn.Conv2d, nn.ReLU,
...) are drawn in either form. The last value feeds a loss: sum, mean, mse_loss against a
target of its shape, or, for a 2-D [N, C] value, nll_loss of its log_softmax (mean or sum) or
cross_entropy. Most models are small (compiling dominates); one in five is wide enough for
the kernels' register blocks and threaded paths (Sizes).

The ops: conv2d (kernel 1-3 or 1-5, stride 1-2, padding 0-1 or "same", bias or not),
max_pool2d and avg_pool2d of 3-D and 4-D values (kernel, stride default, equal or other),
relu, sigmoid, tanh, softmax and log_softmax (last dim), flatten from any dim, view/reshape
to 1-4 dims (maybe with -1: a linear layer can feed a conv), linear (dot and bias, inputs
of any rank), dropout (compared in eval mode), multiplication by a constant, and + - * of
equal shapes or + of a row vector.

Left out: what the front end rejects although the table's rules accept it (- and * of a
row vector, 0-D operands: see ROW_VECTOR_OPS); dropout in training mode (its masks are the
backend's own: tests/test_cnn.hy); argmax and == (no gradient, int results); sum and mean
as inner nodes (0-D values only combine in the way the front end rejects); inputs from
data loaders (batched types); optimizers other than SGD (tests/test_adam.py).
"""
import operator
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import strategies as st

import hy  # noqa: F401  (imports .hy modules)
from hytorch.ir.ops import OPS
from hytorch.ir.types import ShapeError, TensorType

MAX_NODES = 6


@dataclass(frozen=True)
class Sizes:
    """The largest sizes drawn: most models are small (compiling dominates); some are wide
    enough for the kernels' full register blocks and their threaded paths."""
    batch: int
    channels: int
    side: int
    kernel: int
    features: int


SMALL = Sizes(batch=3, channels=4, side=9, kernel=3, features=8)
WIDE = Sizes(batch=17, channels=12, side=18, kernel=5, features=40)
SCALES = (0.5, -2.0, 3.0)
# The table's rule for + - * (elementwise-type) is what compiles: equal shapes, or `+` of a row
# vector (test_random_models.py checks that it refuses the rest).
ROW_VECTOR_OPS = ("+",)
# A module's parameter may come first: `p + x` dispatches torch.Tensor.add, named in the table.
PARAMETER_FIRST = True


@dataclass
class Node:
    """`op` (a key of CALLS) applied to the values `inputs` (indices: 0 is x, i is node i's
    result) with `attrs`; `params` are the shapes of its parameters (None for an absent
    optional one, conv2d's bias); `type` its result's TensorType (by the table's rule);
    `shares` pairs (position in params, index of an earlier parameter it is)."""
    op: str
    inputs: tuple
    attrs: dict
    params: tuple
    type: TensorType
    shares: tuple = ()


def parameter_indices(spec):
    """Which parameter each node's parameters are (None for an absent one): an index into
    the model's parameters, which are the shapes of `fresh`, in order. A node's `shares`
    says which of its parameters are an earlier one's (by index) rather than its own."""
    fresh, indices = [], []
    for node in spec.nodes:
        mine = []
        for position, shape in enumerate(node.params):
            shared = dict(node.shares).get(position)
            if shape is None or shared is not None:
                mine.append(shared)
            else:
                mine.append(len(fresh))
                fresh.append(shape)
        indices.append(mine)
    return fresh, indices


@dataclass
class ModelSpec:
    input: TensorType
    nodes: list = field(default_factory=list)
    loss: str = "sum"
    size: Sizes = None

    @property
    def types(self):
        return [self.input] + [n.type for n in self.nodes]

    @property
    def output(self):
        return self.types[-1]

    def describe(self):
        """The model as Python over x and parameters p0, p1, ... (a reproducer's text)."""
        fresh, indices = parameter_indices(self)
        lines = [f"x = torch.randn{tuple(self.input.shape)}"]
        lines += [f"p{k} = nn.Parameter(torch.randn{tuple(shape)})"
                  for k, shape in enumerate(fresh)]
        for i, (node, mine) in enumerate(zip(self.nodes, indices), 1):
            params = ["None" if k is None else f"p{k}" for k in mine]
            values = [f"v{j}" if j else "x" for j in node.inputs]
            text = call_text(node, self.types[node.inputs[0]], values, params)
            own = (f", its weight and bias {', '.join(params)}"
                   if node.attrs.get("module") and params else "")
            lines.append(f"v{i} = {text}   # {list(node.type.shape)}{own}")
        last = f"v{len(self.nodes)}" if self.nodes else "x"
        lines.append(f"loss = {LOSSES[self.loss][1].format(last)}")
        return "\n".join(lines)


# Each op as torch calls it: (function form, module form or None, the function form's text).
# The function form takes the node's values, then its parameters, then its attrs as keywords;
# the module form makes an nn.Module of the input's type t (its parameters are set later).
CALLS = {
    "conv2d": (lambda x, w, b, stride, padding: F.conv2d(x, w, b, stride=stride, padding=padding),
               lambda t, w, b, stride, padding: nn.Conv2d(t.shape[1], w[0], w[2:], stride, padding,
                                                          bias=b is not None),
               "F.conv2d({0}, {1}, {2}, stride={stride}, padding={padding!r})"),
    "max_pool2d": (lambda x, kernel, stride: F.max_pool2d(x, kernel, stride),
                   lambda t, kernel, stride: nn.MaxPool2d(kernel, stride),
                   "F.max_pool2d({0}, {kernel}, {stride})"),
    "avg_pool2d": (lambda x, kernel, stride: F.avg_pool2d(x, kernel, stride),
                   lambda t, kernel, stride: nn.AvgPool2d(kernel, stride),
                   "F.avg_pool2d({0}, {kernel}, {stride})"),
    "relu": (F.relu, lambda t: nn.ReLU(), "F.relu({0})"),
    "sigmoid": (torch.sigmoid, lambda t: nn.Sigmoid(), "torch.sigmoid({0})"),
    "tanh": (torch.tanh, lambda t: nn.Tanh(), "torch.tanh({0})"),
    "softmax": (lambda x, dim: F.softmax(x, dim=dim), lambda t, dim: nn.Softmax(dim),
                "F.softmax({0}, dim={dim})"),
    "log_softmax": (lambda x, dim: F.log_softmax(x, dim=dim), lambda t, dim: nn.LogSoftmax(dim),
                    "F.log_softmax({0}, dim={dim})"),
    "flatten": (lambda x, start: torch.flatten(x, start), lambda t, start: nn.Flatten(start),
                "torch.flatten({0}, {start})"),
    "view": (lambda x, dims, method: getattr(x, method)(*dims), None, "{0}.{method}(*{dims})"),
    "linear": (F.linear, lambda t, w, b: nn.Linear(w[1], w[0], bias=b is not None),
               "F.linear({0}, {1}, {2})"),
    # eval mode: dropout is its input (the tests compare in eval mode)
    "dropout": (lambda x, p: F.dropout(x, p, training=False), lambda t, p: nn.Dropout(p),
                "F.dropout({0}, {p}, training=False)"),
    "scale": (lambda x, s: x * s, None, "{0} * {s}"),
    "+": (operator.add, None, "{0} + {1}"),
    "-": (operator.sub, None, "{0} - {1}"),
    "*": (operator.mul, None, "{0} * {1}"),
}


def _operands(node, values, params):
    """A node's operands: its values, then its parameters (swapped when it says so)."""
    operands = [*values, *params]
    return operands[::-1] if node.attrs.get("swap") else operands


def _attrs(node):
    return {k: v for k, v in node.attrs.items() if k not in ("swap", "module")}


def call_text(node, t, values, params):
    """The Python of `node` applied to the input of type t: `values` and `params` are names."""
    function, module, text = CALLS[node.op]
    if node.attrs.get("module"):
        return f"nn.{make_module(node, t)!r}({values[0]})"
    return text.format(*_operands(node, values, params), **_attrs(node))


def make_module(node, t):
    """The nn.Module form of `node` on an input of type t."""
    return CALLS[node.op][1](t, *node.params, **_attrs(node))


# Each loss: (its function of the output and the target, its text).
LOSSES = {
    "sum": (lambda out, target: out.sum(), "{0}.sum()"),
    "mean": (lambda out, target: out.mean(), "{0}.mean()"),
    "mse_loss": (F.mse_loss, "F.mse_loss({0}, target)"),
    "nll_loss": (lambda out, target: F.nll_loss(F.log_softmax(out, dim=1), target),
                 "F.nll_loss(F.log_softmax({0}, dim=1), target)"),
    "nll_loss_sum": (lambda out, target: F.nll_loss(F.log_softmax(out, dim=-1), target,
                                                    reduction="sum"),
                     "F.nll_loss(F.log_softmax({0}, dim=-1), target, reduction='sum')"),
    "cross_entropy": (F.cross_entropy, "F.cross_entropy({0}, target)"),
}
CLASSIFICATION_LOSSES = ("nll_loss", "nll_loss_sum", "cross_entropy")


# ------------------------------------------------------------------ drawing nodes
# Each rule draws the arguments of one op for a value of type t (or None when the op cannot
# apply to it at all) and returns (table op name, input types, table attrs, Node fields);
# the table's rule then gives the result's type, or rejects the draw (ShapeError).


def _pair(draw, lo, hi):
    a = draw(st.integers(lo, hi))
    return (a, a) if draw(st.booleans()) else (a, draw(st.integers(lo, hi)))


def _conv2d(draw, t, size):
    if t.ndim != 4:
        return None
    oc = draw(st.integers(1, size.channels))
    kernel, stride = _pair(draw, 1, size.kernel), _pair(draw, 1, 2)
    padding = _pair(draw, 0, 1)
    pads = padding
    if stride == (1, 1) and all(k % 2 for k in kernel) and draw(st.booleans()):
        padding, pads = "same", tuple(k // 2 for k in kernel)
    w = TensorType((oc, t.shape[1], *kernel))
    b = TensorType((oc,)) if draw(st.booleans()) else None
    return ("conv2d", [t, w, b], [*stride, *pads],
            dict(attrs={"stride": stride, "padding": padding},
                 params=(w.shape, None if b is None else b.shape)))


def _pool(name):
    def draw_pool(draw, t, size):
        if t.ndim not in (3, 4):
            return None
        kernel = _pair(draw, 1, size.kernel)
        stride = draw(st.sampled_from([None, kernel, _pair(draw, 1, 3)]))
        return (name, [t], [*kernel, *(stride or kernel)],
                dict(attrs={"kernel": kernel, "stride": stride}, params=()))
    return draw_pool


def _unary(name):
    def draw_unary(draw, t, size):
        return (name, [t], [], dict(attrs={}, params=()))
    return draw_unary


def _softmax(name):
    def draw_softmax(draw, t, size):
        if t.ndim < 1:
            return None
        dim = draw(st.sampled_from([-1, t.ndim - 1]))
        return (name, [t], [dim], dict(attrs={"dim": dim}, params=()))
    return draw_softmax


def _flatten(draw, t, size):
    if t.ndim < 2:
        return None
    start = draw(st.integers(0, t.ndim - 2))
    dims = [*t.shape[:start], -1]
    return ("view", [t], [dims], dict(attrs={"start": start}, params=()))


def _view(draw, t, size):
    """A reshape to 1-4 dims (one of them maybe -1): the same elements, other ops' shapes."""
    dims, rest = [], t.numel
    for _ in range(draw(st.integers(0, 3))):
        dims.append(draw(st.sampled_from([d for d in range(1, rest + 1) if rest % d == 0])))
        rest //= dims[-1]
    dims.append(rest)
    if draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    method = draw(st.sampled_from(["view", "reshape"]))
    return ("view", [t], [dims], dict(attrs={"dims": dims, "method": method}, params=()))


def _linear(draw, t, size):
    if t.ndim < 1:
        return None
    out = draw(st.integers(1, size.features))
    w = TensorType((out, t.shape[-1]))
    bias = draw(st.booleans())
    return ("dot", [w, t], [], dict(attrs={}, params=(w.shape, (out,) if bias else None)))


def _dropout(draw, t, size):
    p = draw(st.sampled_from([0.25, 0.5]))
    return ("dropout", [t], [p], dict(attrs={"p": p}, params=()))


def _scale(draw, t, size):
    s = draw(st.sampled_from(SCALES))
    return ("scale", [t], [s], dict(attrs={"s": s}, params=()))


def _parameter_shape(draw, op, t):
    """The shape of a parameter combined with t by op: t's, or a row vector's."""
    row = op in ROW_VECTOR_OPS and t.ndim >= 2 and draw(st.booleans())
    return t.shape[-1:] if row else t.shape


def _elementwise(draw, t, size):
    """+ - * of t and a parameter of its shape or (+ only, see ROW_VECTOR_OPS) a row vector,
    either side first (an earlier value of t's shape is found by `_draw_node`)."""
    op = draw(st.sampled_from(["-", "+", "*"]))
    shape = _parameter_shape(draw, op, t)
    swap = PARAMETER_FIRST and draw(st.booleans())
    operands = [TensorType(shape), t] if swap else [t, TensorType(shape)]
    return (op, operands, [], dict(attrs={"swap": swap}, params=(shape,)))


def _offset(draw, spec):
    """spec's last value plus (or times) a parameter of its shape (or a row vector): the
    model's parameter when none of its own reaches the loss."""
    t = spec.output
    op = draw(st.sampled_from(["+", "*"]))
    shape = _parameter_shape(draw, op, t)
    return Node(op, (len(spec.nodes),), {"swap": False}, (shape,),
                _result_type(op, [t, TensorType(shape)], []))


# (hypothesis favours the ends of a list: the ops with parameters are there)
RULES = {"conv2d": _conv2d, "max_pool2d": _pool("max_pool2d"), "relu": _unary("relu"),
         "flatten": _flatten, "softmax": _softmax("softmax"), "sigmoid": _unary("sigmoid"),
         "dropout": _dropout, "scale": _scale, "tanh": _unary("tanh"),
         "log_softmax": _softmax("log_softmax"), "avg_pool2d": _pool("avg_pool2d"),
         "view": _view, "elementwise": _elementwise, "linear": _linear}


def _result_type(op, input_types, attrs):
    """The table's rule for op (None: the draw does not fit)."""
    try:
        return OPS[op].result_type(input_types, attrs)
    except ShapeError:
        return None


def _draw_node(draw, spec):
    """One more node over spec's values, or None when the drawn op did not fit."""
    types = spec.types
    source = len(types) - 1 if draw(st.integers(0, 3)) else draw(st.integers(0, len(types) - 1))
    t = types[source]
    kind = draw(st.sampled_from(list(RULES)))
    if t.ndim == 4 and draw(st.integers(0, 3)) == 0:
        kind = "conv2d"     # the op that matters most, which only images take
    # a binary op with an earlier value of the same shape: the DAG's joins
    same = [i for i, u in enumerate(types) if u.shape == t.shape]
    if kind == "elementwise" and same and draw(st.booleans()):
        other = draw(st.sampled_from(same))
        op = draw(st.sampled_from(["-", "+", "*"]))
        result = _result_type(op, [t, types[other]], [])
        return Node(op, (source, other), {}, (), result) if result else None
    drawn = RULES[kind](draw, t, spec.size)
    if drawn is None:
        return None
    op, input_types, attrs, fields = drawn
    result = _result_type(op, input_types, attrs)
    if result is None:
        return None
    name = op if kind == "elementwise" else kind
    if CALLS[name][1] is not None and draw(st.booleans()):
        fields["attrs"]["module"] = True
    return Node(name, (source,), fields["attrs"], fields["params"], result,
                _draw_shares(draw, spec, fields["params"]))


def _draw_shares(draw, spec, shapes):
    """Sometimes a node's parameter is an earlier one of its shape (a weight used twice)."""
    fresh, _ = parameter_indices(spec)
    shares = []
    for position, shape in enumerate(shapes):
        same = [k for k, s in enumerate(fresh) if s == shape]
        if shape is not None and same and draw(st.integers(0, 2)) == 0:
            shares.append((position, draw(st.sampled_from(same))))
    return tuple(shares)


def _loss_is_trained(spec):
    """Whether a parameter reaches the last value (else there is nothing to train)."""
    stack, seen = [len(spec.nodes)], set()
    while stack:
        i = stack.pop()
        if i == 0 or i in seen:
            continue
        seen.add(i)
        node = spec.nodes[i - 1]
        if any(shape is not None for shape in node.params):
            return True
        stack.extend(node.inputs)
    return False


@st.composite
def model_specs(draw, max_nodes=MAX_NODES):
    """A random valid model: an image [N, C, H, W] or a matrix [N, F] input, up to
    `max_nodes` ops drawn with the table's shape rules, then a loss."""
    size = WIDE if draw(st.integers(0, 4)) == 0 else SMALL
    n = draw(st.integers(1, size.batch))
    if draw(st.integers(0, 3)):
        side = st.integers(3, size.side)
        shape = (n, draw(st.integers(1, size.channels)), draw(side), draw(side))
    else:
        shape = (n, draw(st.integers(1, size.features)))
    spec = ModelSpec(TensorType(shape), size=size)
    for _ in range(draw(st.integers(1, max_nodes))):
        node = _draw_node(draw, spec)
        if node is not None:
            spec.nodes.append(node)
    if not _loss_is_trained(spec):
        spec.nodes.append(_offset(draw, spec))    # something to train
    out = spec.output
    losses = ["sum", "mean", "mse_loss"] + (list(CLASSIFICATION_LOSSES) if out.ndim == 2 else [])
    spec.loss = draw(st.sampled_from(losses))
    return spec


# ------------------------------------------------------------------ the model in torch


def _init(shape, generator):
    fan_in = max(1, int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else shape[0])
    return nn.Parameter(torch.randn(*shape, generator=generator) / fan_in ** 0.5)


class RandomModel(nn.Module):
    """`spec` as a module: forward(x) is its last value, loss(x, target) its loss. Nodes of the
    module form call an nn.Module whose weight and bias are the node's parameters (also in
    `weights`, which orders model.parameters() as spec.describe() numbers them). Dropout is
    in eval mode (the tests compare in eval mode: its masks are the backend's own)."""

    def __init__(self, spec, seed=0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.spec = spec
        fresh, self.indices = parameter_indices(spec)
        self.weights = nn.ParameterList([_init(shape, generator) for shape in fresh])
        self.layers = nn.ModuleDict()
        for i, node in enumerate(spec.nodes):
            mine = self.parameters_of(i)
            if node.attrs.get("module"):
                layer = make_module(node, spec.types[node.inputs[0]])
                for name, p in zip(["weight", "bias"], mine):
                    setattr(layer, name, p)
                self.layers[str(i)] = layer

    def parameters_of(self, i):
        return [None if k is None else self.weights[k] for k in self.indices[i]]

    def forward(self, x):
        values = [x]
        for i, node in enumerate(self.spec.nodes):
            mine = self.parameters_of(i)
            args = [values[j] for j in node.inputs]
            if node.attrs.get("module"):
                values.append(self.layers[str(i)](*args))
            else:
                values.append(CALLS[node.op][0](*_operands(node, args, mine), **_attrs(node)))
        return values[-1]

    def loss(self, x, target):
        return LOSSES[self.spec.loss][0](self(x), target)


def example_inputs(spec, seed=0):
    """x and the loss's target for `spec` (a float tensor of the output's shape, or labels)."""
    generator = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(*spec.input.shape, generator=generator)
    out = spec.output.shape
    if spec.loss in CLASSIFICATION_LOSSES:
        target = torch.randint(0, out[1], (out[0],), generator=generator)
    else:
        target = torch.randn(*out, generator=generator)
    return x, target
