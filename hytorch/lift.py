"""Lifting Python objects into a staging run: torch parameters and tensors, optimizers, data
loaders. Each is lifted once per run; what it stands for is recorded as a binding so the
compiled code can be given its current value when called (and write trained values back).

    (setv opt (optim.SGD (.parameters model) :lr 0.01))
    ;; staged: (let x5 (tensor (50 784)) (let x6 (variable x5 False) ... (SGD (0.01 0.0) (x6 x8 ...))

An optimizer is lifted by its entry in hytorch.ir.optimizers' table (SGD, Adam, AdamW).

Which objects are lifted is decided by `hytorch.stand_ins.stand_in`. The staged tensor
operations (hytorch.tensors) sit above this module: they lift the torch tensors they meet
with `lift_tensor`, and import torch, which staging without tensors must not need.
"""
from hytorch import builder
from hytorch.ir.optimizers import OPTIMIZERS
from hytorch.ir.syntax import Sym
from hytorch.ir.types import TensorType
from hytorch.errors import StagingError
from hytorch.source_location import user_location
from hytorch.values import Rep, Staged

_TORCH_DTYPES = {"torch.float32": "float32", "torch.int64": "int64"}

# The class of staged tensors, hytorch.tensors.TensorRep, registered by `use_staged_tensors`
# (this module cannot import hytorch.tensors, which imports it).
_staged_tensor_class = None


def use_staged_tensors(tensor_class):
    """Registration hook: lifted tensors (parameters, a loader's batches) are staged as
    `tensor_class`. hytorch.stand_ins registers hytorch.tensors.TensorRep when it loads it,
    before the first object that holds tensors is lifted."""
    global _staged_tensor_class
    _staged_tensor_class = tensor_class


def staged_tensor(sym, ttype, requires_grad=False):
    if _staged_tensor_class is None:
        raise RuntimeError("no class of staged tensors is registered: lift objects through "
                           "hytorch.stand_ins.stand_in, which loads hytorch.tensors")
    return _staged_tensor_class(sym, ttype, requires_grad)


class Binding:
    """Where the value of a lifted object comes from when the compiled code is called:
    argument `position` (and `name` inside it, for a module parameter), or the object itself."""

    def __init__(self, kind, obj, position=None, name=None):
        self.kind, self.obj, self.position, self.name = kind, obj, position, name
        self._path = None if name is None else name.split(".")

    def resolve(self, args):
        """The object to use for a call with `args`; a ValueError if that argument does not
        have what the program was staged with."""
        if self.position is None:
            return self.obj
        arg = args[self.position]
        if self.name is None:
            if type(arg) is not type(self.obj):
                raise ValueError(f"argument {self.position + 1} is of type {type(arg).__name__}; "
                                 f"the program was staged with one of type {type(self.obj).__name__}")
            return arg
        try:
            return _parameter(arg, self._path)
        except (AttributeError, KeyError, TypeError):
            pass   # (get_parameter says what is wrong, or finds what the dicts do not hold)
        try:
            return arg.get_parameter(self.name)
        except AttributeError:
            raise ValueError(f"argument {self.position + 1} ({type(arg).__name__}) has no "
                             f"parameter `{self.name}`, which the program was staged with") from None


def _parameter(module, path):
    """A module's parameter by its dotted name, read from the dicts torch keeps submodules and
    parameters in: what `get_parameter` finds, at a seventh of its cost (it runs at every
    call of a compiled model); a KeyError or TypeError when they do not hold it."""
    for name in path[:-1]:
        module = module._modules[name]
    parameter = module._parameters[path[-1]]
    if parameter is None:
        raise KeyError(path[-1])
    return parameter


def _emit_root(st, rhs):
    """Bind `rhs` where every block can see it: in place at the top level, else hoisted."""
    return st.emit(rhs) if st.depth == 1 else st.hoist(rhs)


def _remember(st, obj, stand_in, binding_sym, binding):
    st.lifted[id(obj)] = stand_in
    st.lifted_objects.append((binding_sym, binding))
    return stand_in


def lift_tensor(t, position=None, name=None):
    """A torch tensor as a staged variable: trainable for a Parameter that requires grad,
    else a constant input. Its value is read from `t` (or argument `position`) at each call."""
    st = builder.current()
    if id(t) in st.lifted:
        return st.lifted[id(t)]
    dtype = _TORCH_DTYPES.get(str(t.dtype))
    if dtype is None:
        raise StagingError(f"tensors of dtype {t.dtype} cannot be staged (float32 and int64 can)",
                           user_location())
    if t.grad_fn is not None:
        raise StagingError(
            "a tensor computed from a module's parameters by ordinary code while staging (no "
            "staged value took part, so torch computed it now) would be a constant of the "
            "compiled code, neither trained nor updated when the parameters change; compute it "
            "from a staged value, such as an argument", user_location())
    import torch  # t is a torch tensor: torch is loaded already
    trainable = isinstance(t, torch.nn.Parameter) and t.requires_grad
    if trainable and dtype != "float32":
        raise StagingError("only float32 parameters can be trained", user_location())
    shape = [int(d) for d in t.shape]
    tensor_node = [Sym("tensor"), shape] + ([Sym(dtype)] if dtype != "float32" else [])
    tsym = _emit_root(st, tensor_node)
    vsym = _emit_root(st, [Sym("variable"), tsym, not trainable])
    rep = staged_tensor(vsym, TensorType(shape, dtype), requires_grad=trainable)
    return _remember(st, t, rep, tsym, Binding("tensor", t, position, name))


def lift_module(module, position=None):
    """Lift every parameter of `module`, in order, bound to argument `position`; its buffers
    are lifted where they are used (torch calls on them are staged: parameter_calls.py)."""
    for name, p in module.named_parameters():
        lift_tensor(p, position, name)
    builder.current().module_buffers.update(id(b) for b in module.buffers())
    return module


class StagedOptimizer(Staged):
    """A torch optimizer while staging: `zero_grad` and `step` become IR calls."""

    kind = "optimizer"

    def __init__(self, sym, optimizer, params):
        super().__init__(sym)
        self.optimizer, self.params = optimizer, params

    def zero_grad(self, set_to_none=True):
        builder.current().emit([Sym("call"), self.sym, Sym("zero_grad")])

    def step(self, closure=None):
        if closure is not None:
            raise StagingError("optimizer.step with a closure cannot be staged", user_location())
        builder.current().emit([Sym("call"), self.sym, Sym("step")])

    def __getattr__(self, name):
        return getattr(self.optimizer, name)


def _torch_class(dotted):
    import torch  # an optimizer is being lifted: torch is loaded already
    cls = torch
    for part in dotted.split(".")[1:]:
        cls = getattr(cls, part)
    return cls


def optimizer_entry(optimizer):
    """The entry of hytorch.ir.optimizers' table for `optimizer`'s class (exactly: a subclass
    may step differently), or a StagingError."""
    for entry in OPTIMIZERS.values():
        if type(optimizer) is _torch_class(entry.torch):
            return entry
    supported = ", ".join(entry.torch for entry in OPTIMIZERS.values())
    raise StagingError(f"{type(optimizer).__name__} cannot be staged; use {supported}",
                       user_location())


def _group_settings(entry, group):
    """{setting name: value} of one parameter group, or a StagingError naming the option."""
    for option, value in entry.fixed.items():
        if group.get(option, value) != value:
            raise StagingError(f"{entry.name} with {option}={group[option]!r} cannot be staged "
                               f"(only {option}={value!r})", user_location())
    values = {}
    for s in entry.settings:
        value = group[s.torch] if s.index is None else group[s.torch][s.index]
        if not isinstance(value, (int, float)):  # a bool is an int
            raise StagingError(f"{entry.name}'s {s.torch} is a {type(value).__name__}: only a "
                               "Python number or bool can be staged", user_location())
        values[s.name] = bool(value) if s.ctype == "bool" else float(value)
    return values


def optimizer_settings(entry, optimizer):
    """{setting name: value} of `optimizer`, the same in every parameter group (options the
    entry accepts whatever their value are left out), or a StagingError naming the option."""
    groups = [_group_settings(entry, g) for g in optimizer.param_groups]
    differing = [s.torch for s in entry.settings
                 if len({g[s.name] for g in groups}) > 1]
    if differing:
        raise StagingError(f"{entry.name} parameter groups with different "
                           f"{', '.join(dict.fromkeys(differing))} cannot be staged",
                           user_location())
    return groups[0]


def lift_optimizer(optimizer, position=None):
    """A torch optimizer as the node `(NAME (SETTINGS...) (PARAMS...))` of its table entry."""
    st = builder.current()
    if id(optimizer) in st.lifted:
        return st.lifted[id(optimizer)]
    entry = optimizer_entry(optimizer)
    values = optimizer_settings(entry, optimizer)
    params = [lift_tensor(p) for g in optimizer.param_groups for p in g["params"]]
    sym = _emit_root(st, [Sym(entry.name), entry.node_settings(values), [p.sym for p in params]])
    return _remember(st, optimizer, StagedOptimizer(sym, optimizer, params), sym,
                     Binding("optimizer", optimizer, position))


class StagedLoader(Staged):
    """A hytorch.data loader while staging: a `for` over it is a `for_dataloader` loop."""

    kind = "loader"

    def __init__(self, sym, loader):
        super().__init__(sym)
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def __staged_enumerate__(self, start=0):
        return StagedEnumerate(self, start)

    def __staged_for__(self, run_block, body, where, start=None):
        st = builder.current()
        index, data, target = st.fresh(), st.fresh("t"), st.fresh()
        tag = str(index)
        batch = self.loader.batch_size
        (data_shape, data_dtype), (target_shape, target_dtype) = self.loader.sample_types()
        data_rep = staged_tensor(data, TensorType([batch, *data_shape], data_dtype, tag))
        target_rep = staged_tensor(target, TensorType([batch, *target_shape], target_dtype, tag))

        def step():
            st.define_here(index, data, target)
            if start is None:
                return body((data_rep, target_rep))
            i = Rep(index, "int")
            return body((i + start if start else i, (data_rep, target_rep)))
        block = run_block(step)
        st.emit([Sym("for_dataloader"), self.sym, [index, data, target], block.node()])


class StagedEnumerate:
    """`(enumerate xs start)` of a staged iterable (a loader, a hytorch.ListOf argument) whose
    `__staged_for__` takes the start of the count."""

    def __init__(self, iterable, start):
        self.iterable, self.start = iterable, start

    def __staged_for__(self, run_block, body, where):
        self.iterable.__staged_for__(run_block, body, where, self.start)


def lift_loader(loader, position=None):
    """A hytorch.data loader: `(loader (MNIST ...))` or, for an ArrayLoader,
    `(loader (arrays (INPUT-SHAPE) (TARGET-SHAPE) TARGET-DTYPE BATCH))`, one sample's shapes."""
    from hytorch.data import MNIST   # loaded: `loader` is one of its loaders

    st = builder.current()
    if id(loader) in st.lifted:
        return st.lifted[id(loader)]
    source = _mnist_source(st, loader) if isinstance(loader, MNIST) else _arrays_source(loader)
    sym = _emit_root(st, [Sym("loader"), source])
    return _remember(st, loader, StagedLoader(sym, loader), sym, Binding("loader", loader, position))


def _mnist_source(st, loader):
    transform = _emit_root(st, [Sym("transform"), Sym("toTensor")])
    if loader.normalize is not None:
        mean, std = loader.normalize
        normalize = _emit_root(st, [Sym("transform"), Sym("normalize"), [float(mean), float(std)]])
        transform = _emit_root(st, [Sym("transform"), Sym("compose"), [transform, normalize]])
    return [Sym("MNIST"), bool(loader.train), True, transform, loader.batch_size,
            bool(loader.shuffle)]


def _arrays_source(loader):
    (input_shape, _), (target_shape, target_dtype) = loader.sample_types()
    return [Sym("arrays"), list(input_shape), list(target_shape), Sym(target_dtype),
            loader.batch_size]


def guard_real_optimizer_steps():
    """A real optimizer stepping while staging would train at generation time: refuse it."""
    if getattr(guard_real_optimizer_steps, "installed", False):
        return

    def refuse(optimizer, args, kwargs):
        if builder.current() is not None:
            raise StagingError(f"a real {type(optimizer).__name__} was stepped while staging; pass "
                               "the optimizer to the defstaged function as an argument so its "
                               "steps are staged", user_location())
    from torch.optim.optimizer import register_optimizer_step_pre_hook  # called once torch is loaded
    register_optimizer_step_pre_hook(refuse)
    guard_real_optimizer_steps.installed = True
