"""The Python side of a compiled program's state: the objects it lifted while staging (a
model's parameters, an optimizer, a data loader) give their current values to the state before
it runs, and get back what it trained (weights, the optimizer's state: SGD's momentum buffers,
Adam's step counts and moments, under torch's names; the loader's random state) afterwards.

    bridge = TorchBridge(program, slots)
    keep_alive = bridge.copy_in(state, args)   # parameters, optimizer state, loaders in
    ...                                        # the compiled code runs
    bridge.copy_out(state, args)               # trained values out

A tensor is not copied when it can be used where it is: its slot is pointed at the tensor's
own memory (ht_bind_slot), which the program reads and trains in place; it is copied in only
when it is laid out otherwise (not contiguous, another element type). Either way a call sees
the values the tensors hold when it is made, also after changes torch does not count in
`_version` (through `.data`, or NumPy).

`state` is the compiled program's state as hytorch.native gives it (a ProgramState): its
slots' memory as numpy arrays, and the runtime's loader functions. torch is imported only
when torch objects are involved.
"""
import contextlib
import sys
import weakref

from hytorch.data import MNIST
from hytorch.ir.slots import SlotRole

# The slots whose values torch keeps in `optimizer.state[param]`.
_IN_TORCH_OPTIMIZER_STATE = (SlotRole.OPTIMIZER_STATE, SlotRole.OPTIMIZER_STEP)


def loader_dims(program):
    """The image size of each MNIST loader `program` lifted, by its IR symbol (an ArrayLoader's
    IR node says its shapes)."""
    return {str(sym): (b.obj.rows, b.obj.cols) for sym, b in program.bindings.items()
            if b.kind == "loader" and isinstance(b.obj, MNIST)}


def _batches(batch_size, input_shape, target_shape, target_dtype):
    """Batches as an error message tells them:
    batches of 64 samples: inputs [1, 28, 28] float32, targets [] int64."""
    return (f"batches of {batch_size} samples: inputs {list(input_shape)} float32, targets "
            f"{list(target_shape)} {target_dtype}")


# torch's copy_ of more elements than this runs on its OpenMP threads (at::GRAIN_SIZE).
_TORCH_PARALLEL_COPY = 32768


def _torch_dtype(name):
    """torch's dtype of a slot's element type ("float32", "int64")."""
    return getattr(sys.modules["torch"], name)


def _write_in_place(torch, tensor, state, i, numel, dtype):
    """Overwrite `tensor` with slot `i` of `state` (`numel` `dtype`s), counted as an
    in-place change as torch's copy_ counts it. A large one goes through NumPy: copy_ would run
    it on torch's OpenMP threads, which then spin for milliseconds on the cores that a compiled
    call made right after wants (a two-thread MLP epoch called again at once: ~0.7 ms slower a
    call). A small one through copy_ from the slot's cached torch view, which costs ~1 us a
    tensor less."""
    if not tensor.is_contiguous():   # (a transposed weight: copy_ follows its strides)
        tensor.detach().copy_(state.tensor(i, numel, dtype, torch).view(tensor.shape))
        return
    if numel <= _TORCH_PARALLEL_COPY:
        tensor.view(-1).copy_(state.tensor(i, numel, dtype, torch))
        return
    tensor.detach().view(-1).numpy()[:] = state.array(i, numel, dtype)
    torch.autograd.graph.increment_version(tensor)


class TorchBridge:
    """Copies values between the objects a program was called with and its compiled state,
    slot by slot (`slots`: the renderer's description of the state, each with a `role`)."""

    def __init__(self, program, slots):
        self.program, self.slots = program, slots
        self._default_loaders = {}
        self._bound = {}     # slot -> (weak ref, data_ptr, dtype, storage) of the tensor it is at
        self._owners = {}    # parameter symbol -> where its optimizer state was found
        self._resolved = {}
        # Without a torch optimizer nothing trains the parameters from Python's side: the optimizer
        # slots are the program's own, and no parameter comes back.
        self._optimizers = any(b.kind == "optimizer" for b in program.bindings.values())
        # what copy_out writes back: trained parameters and optimizer state, loaders' shuffles
        self.writes_back = self._optimizers or any(s["role"] == SlotRole.LOADER for s in slots)
        # the slots copy_in has work for at each call, in order (a batch-1 inference call runs
        # through this list: it holds only the parameters then)
        self._copied_in = [(i, s) for i, s in enumerate(slots) if self._copies_in(s["role"])]

    def _copies_in(self, role):
        return (role in (SlotRole.TENSOR, SlotRole.LOADER, SlotRole.RNG)
                or (self._optimizers
                    and (role in _IN_TORCH_OPTIMIZER_STATE or role == SlotRole.FIRST_STEP)))

    @property
    def name(self):
        return self.program.name

    def _binding(self, sym):
        return self.program.bindings.get(sym)

    def _resolve(self, sym, args):
        """The object bound to `sym` for this call (looked up once per call: a module's
        parameter is found by name, which costs microseconds)."""
        if sym not in self._resolved:
            binding = self._binding(sym)
            self._resolved[sym] = None if binding is None else binding.resolve(args)
        return self._resolved[sym]

    def _describe(self, sym):
        """What the tensor bound to `sym` is, in the caller's terms."""
        binding = self._binding(sym)
        if binding is None or binding.position is None:
            return f"the tensor staged as {sym}"
        if binding.name is not None:
            return f"parameter `{binding.name}` of argument {binding.position + 1}"
        return f"argument {binding.position + 1}"

    def _optimizer_state(self, tensor_sym, args):
        """The torch optimizer state (a dict) of the parameter bound to `tensor_sym`."""
        key = ("optimizer state", tensor_sym)
        if key not in self._resolved:
            self._resolved[key] = self._find_optimizer_state(tensor_sym, args)
        return self._resolved[key]

    def _find_optimizer_state(self, tensor_sym, args):
        param = self._resolve(tensor_sym, args)
        if param is None:
            return None
        # the optimizer found for this parameter last time, when this call gives the same two
        # (weak references: the bridge keeps neither alive)
        binding, optimizer_ref, param_ref = self._owners.get(tensor_sym, (None, None, None))
        if binding is not None and param_ref() is param:
            optimizer = binding.resolve(args)
            if optimizer is optimizer_ref() and param in optimizer.state:
                return optimizer.state[param]
        for binding in self.program.bindings.values():
            if binding.kind == "optimizer":
                optimizer = binding.resolve(args)
                if any(p is param for g in optimizer.param_groups for p in g["params"]):
                    self._owners[tensor_sym] = (binding, weakref.ref(optimizer), weakref.ref(param))
                    return optimizer.state[param]
        return None

    def copy_in(self, state, args):
        """Give the state the current values of what the program lifted, from the objects in
        `args`; returns what must stay alive while the program runs (the loaders' data)."""
        keep_alive = []
        self._resolved = {}   # this call's objects, for copy_out too
        for i, s in self._copied_in:
            role = s["role"]
            if role == SlotRole.TENSOR:
                # Read in place, or copied at every call: torch does not count every change
                # of a tensor (one through `.data` or NumPy leaves `_version` as it was).
                source = self._resolve(s["sym"], args)
                if self._bind(state, i, s, source) or source is None:
                    continue
                values = source.detach().contiguous().view(-1).numpy()
                if values.size != s["numel"]:
                    raise ValueError(f"{self.name}: {self._describe(s['sym'])} has "
                                     f"{values.size} elements; the program was staged with "
                                     f"{s['numel']} ({s['shape']})")
                state.array(i, s["numel"], s["dtype"])[:] = values
            elif (role in _IN_TORCH_OPTIMIZER_STATE or role == SlotRole.FIRST_STEP) and self._optimizers:
                self._optimizer_state_in(state, i, s, self._optimizer_state(s["tensor"], args))
            elif role == SlotRole.LOADER:
                keep_alive.append(self._bind_loader(state, i, s, args))
            elif role == SlotRole.RNG:
                self._seed_from_torch(state, i)
        return keep_alive

    @staticmethod
    def _seed_from_torch(state, i):
        """Seed the program's random state (dropout masks) from torch's generator, one draw a
        call, so `torch.manual_seed` repeats a run; without torch the state carries on."""
        torch = sys.modules.get("torch")
        if torch is not None:
            seed = int(torch.randint(-2**63, 2**63 - 1, (), dtype=torch.int64))
            state.array(i, 1, "int64")[0] = seed

    def _bind(self, state, i, s, tensor):
        """Point slot `i` at `tensor`'s own memory, when it is laid out as the slot is
        (contiguous, on the CPU, of the slot's element type and size): the program then reads
        what the tensor holds at each call, and nothing is copied. Whether it is; else the slot
        is back at the state's own memory. The binding outlives the call (checking that it
        still holds costs less than making it), but it is checked before every call: a tensor
        that died, moved or was transposed in place is bound again or copied."""
        bound = self._bound.get(i)
        if tensor is not None and tensor.is_contiguous() and tensor.numel() == s["numel"]:
            pointer = tensor.data_ptr()
            if (bound is not None and bound[0]() is tensor and bound[1] == pointer
                    and tensor.dtype is bound[2]):
                return True
            dtype = _torch_dtype(s["dtype"])
            if tensor.dtype is dtype and tensor.device.type == "cpu" and pointer != 0:
                # (recorded first: see _unbind) with the tensor's storage, whose memory then
                # outlives a `.data` swapped by another thread while the program reads it
                self._bound[i] = (weakref.ref(tensor), pointer, dtype, tensor.untyped_storage())
                state.bind(i, pointer)
                return True
        self._unbind(state, i)
        return False

    def _unbind(self, state, i):
        """Slot `i` back at the state's own memory. A slot is in `_bound` from before it is
        bound until after it is unbound, so that a Ctrl-C between the two steps never leaves
        it bound unknown to the bridge."""
        if i in self._bound:
            state.bind(i, None)
            del self._bound[i]

    def _loader_for(self, s, args):
        """The loader bound to slot `s`: the one given, else (IR compiled from text) the MNIST
        split its node names; an array loader must be given."""
        loader = self._resolve(s["sym"], args)
        if loader is not None:
            return loader
        if s["source"] != "MNIST":
            raise ValueError(f"{self.name}: no ArrayLoader is bound to loader {s['sym']}: call "
                             "a function staged with one, with one in its place")
        if s["sym"] not in self._default_loaders:
            normalize = None if (s["mean"], s["std"]) == (0.0, 1.0) else (s["mean"], s["std"])
            self._default_loaders[s["sym"]] = MNIST(train=s["train"], batch_size=s["batch_size"],
                                                    shuffle=s["shuffle"], normalize=normalize)
        return self._default_loaders[s["sym"]]

    def _bind_loader(self, state, i, s, args):
        """Point the compiled loader of slot `i` at the data of the loader given for it: its
        arrays themselves, which must stay alive while the program runs."""
        loader = self._loader_for(s, args)
        (input_shape, _), (target_shape, target_dtype) = loader.sample_types()
        given = (loader.batch_size, tuple(input_shape), tuple(target_shape), target_dtype)
        staged = (s["batch_size"], tuple(s["input_shape"]), tuple(s["target_shape"]),
                  s["target_dtype"])
        if given != staged:
            raise ValueError(f"{self.name}: the loader for {s['sym']} gives {_batches(*given)}; "
                             f"the program was staged for {_batches(*staged)}")
        self._check_loader_size(s["sym"], loader)
        return (*state.bind_loader(i, loader.c_spec()), loader)

    def _check_loader_size(self, sym, loader):
        """Python code run while staging may have read the staged loader's size (`len`,
        `.count`) into the program as constants; another size would silently change them."""
        binding = self._binding(sym)
        if binding is None:
            return
        staged, given = binding.obj, loader
        if (staged.count, len(staged)) != (given.count, len(given)):
            raise ValueError(
                f"{self.name}: the loader for {sym} holds {given.count} samples in {len(given)} "
                f"batches; the program was staged with one of {staged.count} samples in "
                f"{len(staged)} batches, and sizes read while staging are constants in it: "
                "stage it again with this loader")

    def _optimizer_state_in(self, state, i, s, optimizer_state):
        """Slot `i`'s share of the torch optimizer's state for one parameter: a buffer (zeroed
        when torch has none yet, as torch starts it), the step count, or whether the parameter
        has had its first step. With no torch optimizer bound (IR compiled from text) the
        program keeps its own state from call to call."""
        if optimizer_state is None:
            return
        role = s["role"]
        if role == SlotRole.OPTIMIZER_STATE:
            buffer = optimizer_state.get(s["key"])
            target = state.array(i, s["numel"], "float32")
            if buffer is None:
                target[:] = 0.0
            else:
                target[:] = buffer.detach().reshape(-1).numpy()
        elif role == SlotRole.OPTIMIZER_STEP:
            count = optimizer_state.get(s["key"])
            state.flag(i)[0] = 0 if count is None else int(count)
        else:  # first_step
            state.flag(i)[0] = 0 if optimizer_state else 1

    def copy_out(self, state, args):
        """Write what the run changed back into the objects it came from: trained parameters,
        and the optimizer state of each parameter that has taken a step."""
        if self.writes_back:
            self._write_back(state, args)
        self._resolved = {}   # (nothing of this call's arguments is kept)

    def _write_back(self, state, args):
        torch = sys.modules.get("torch")
        stepped = {s["tensor"]: not state.flag(i)[0] for i, s in enumerate(self.slots)
                   if s["role"] == SlotRole.FIRST_STEP} if self._optimizers else {}
        with torch.no_grad() if torch is not None else contextlib.nullcontext():   # (IR run without torch)
            for i, s in enumerate(self.slots):
                role = s["role"]
                if role == SlotRole.TENSOR and stepped.get(s["sym"]):   # an optimizer may have changed it
                    target = self._resolve(s["sym"], args)
                    if i in self._bound:   # trained in its own memory: counted as a change
                        torch.autograd.graph.increment_version(target)
                    elif target is not None:
                        _write_in_place(torch, target, state, i, s["numel"], s["dtype"])
                elif role in _IN_TORCH_OPTIMIZER_STATE and stepped.get(s["tensor"]):
                    optimizer_state = self._optimizer_state(s["tensor"], args)
                    if optimizer_state is not None:
                        self._optimizer_state_out(torch, state, i, s, args, optimizer_state)
                elif role == SlotRole.LOADER:
                    loader = self._loader_for(s, args)
                    loader.set_rng_state(state.loader_rng_state(i))

    def _optimizer_state_out(self, torch, state, i, s, args, optimizer_state):
        """Write slot `i` into torch's optimizer state: into the tensor torch holds there, in
        place (as torch's own step updates it), or as a new one the first time."""
        key, held = s["key"], optimizer_state.get(s["key"])
        if s["role"] == SlotRole.OPTIMIZER_STEP:
            count = float(state.flag(i)[0])
            if isinstance(held, torch.Tensor) and held.numel() == 1:
                held.fill_(count)
            else:
                optimizer_state[key] = torch.tensor(count, dtype=torch.float32)
            return
        if (isinstance(held, torch.Tensor) and held.dtype == torch.float32
                and held.is_contiguous() and held.numel() == s["numel"]):
            _write_in_place(torch, held, state, i, s["numel"], "float32")
        else:   # a new tensor, copied by NumPy (see _write_in_place)
            values = torch.from_numpy(state.array(i, s["numel"], "float32").copy())
            optimizer_state[key] = values.view_as(self._resolve(s["tensor"], args))
