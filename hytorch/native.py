"""Compiled programs as Python callables: render C, build (cached), load with cffi, call.

    f = compile_program(lms_compile(lambda n: n * 3))
    f(4)          # -> 12, computed by the loaded shared library
    f.c_source    # the generated C

A program that lifted objects while staging (a model's parameters, an optimizer, a data
loader) is called with the same kind of objects in the same positions: hytorch.torch_bridge
gives the compiled program their current values before it runs (tensors are read and
trained in place where their layout allows), and writes what it trained back afterwards,
also when it stops on Ctrl-C or an error. Calls take turns, whichever Python threads make
them.
"""
import builtins
import contextlib
import ctypes
import functools
import os
import signal
import sys
import threading

import cffi
import numpy as np

from hytorch.backend.c_render import render_c
from hytorch.build import build_shared
from hytorch.errors import BuildError, ExecutionError, HyTorchError, show_int
from hytorch.machine import RUNTIME_CDEF, get_num_threads
from hytorch.ir.slots import SlotRole
from hytorch.ir.types import ListType, TensorType as IRTensorType
from hytorch.staged_args import SCALAR_KINDS, ListOf, is_object_argument, tensor_parameter_type
from hytorch.torch_bridge import TorchBridge, loader_dims

HT_OK, HT_ERROR, HT_INTERRUPTED, HT_ZERO_DIVISION, HT_RAISED = 0, 1, 2, 3, 4
_C_TYPES = {"int": "int64_t", "float": "double", "bool": "int", "str": "const char *"}
_NUMPY = {"float32": np.float32, "int64": np.int64}
_C_ELEMENTS = {"float32": "float[]", "int64": "int64_t[]"}


@contextlib.contextmanager
def _sigint_deferred():
    """Hold back Ctrl-C while values move between Python and C (the compiled code unblocks it
    while it runs), so an interrupt never loses trained weights; it arrives right after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


# A program that writes nothing back (an inference function) has nothing to lose to Ctrl-C.
_NOTHING_TO_LOSE = contextlib.nullcontext()

# Compiled calls run one at a time, whichever Python threads make them: cffi lets go of the GIL
# while C runs, and a program's state (its scratch memory), the runtime a cached library's
# programs share (its threads, its last error) and the Ctrl-C handler a call installs and then
# restores are each one per process or per library, not per call.
_ONE_CALL_AT_A_TIME = threading.RLock()

# The thread count each loaded library's runtime was last given, by its path: programs staged
# from the same source share one library, and so one runtime.
_library_threads = {}


def _new_lock_in_child():
    # A child forked while another thread held the lock would wait for it for ever.
    global _ONE_CALL_AT_A_TIME
    _ONE_CALL_AT_A_TIME = threading.RLock()


os.register_at_fork(after_in_child=_new_lock_in_child)


class StagedZeroDivisionError(ExecutionError, ZeroDivisionError):
    """Compiled code divided by zero."""


_STAGED_EXCEPTIONS = {ZeroDivisionError: StagedZeroDivisionError}


def _exception_class(name):
    """The exception class an IR `raise` names (`ValueError`, `package.module.Class`), when
    it is built in or its module is loaded; else None."""
    parts = name.split(".")
    for i in range(len(parts) - 1, -1, -1):
        owner = sys.modules.get(".".join(parts[:i])) if i else builtins
        if owner is None:
            continue
        for part in parts[i:]:
            owner = getattr(owner, part, None)
        if isinstance(owner, type) and issubclass(owner, Exception):
            return owner
        return None
    return None


def raised_exception(name, message, program):
    """The exception for `(raise "NAME" "MESSAGE")` run by compiled code: of that type and an
    ExecutionError too, or an ExecutionError naming the type."""
    cls = _exception_class(name)
    if cls is not None:
        try:
            staged = _STAGED_EXCEPTIONS.get(cls)
            if staged is None:
                staged = type(f"Staged{cls.__name__}", (ExecutionError, cls),
                              {"__module__": __name__})
                _STAGED_EXCEPTIONS[cls] = staged
            error = staged(message)
            error.add_note(f"raised by the compiled {program}")
            return error
        except Exception:  # a class that cannot be an ExecutionError, or made from a message
            pass
    return ExecutionError(f"{program}: {name}: {message}")


def _arg_kind(t):
    """What a parameter staged as `t` is in C: a scalar kind, the IR TensorType of a tensor
    parameter, or "object" (lifted values, given through the state's slots)."""
    tensor_type = tensor_parameter_type(t)
    if tensor_type is not None:
        return tensor_type.ir_type()
    if isinstance(t, ListOf):
        return t.ir_type()
    if isinstance(t, type) and t in SCALAR_KINDS:
        return SCALAR_KINDS[t]
    if is_object_argument(t) or t is object:
        return "object"  # stands for lifted values (or, given as `object`, for nothing)
    raise HyTorchError(f"cannot compile a parameter of type {getattr(t, '__name__', t)}")


def _tensor_argument(value, t, position):
    """The contiguous NumPy array of the tensor parameter of IR type `t` given as `value` (a
    torch tensor or NumPy array; a view of it when it is contiguous and of t's dtype, else one
    copy), or a TypeError / ValueError naming the argument."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):        # a torch tensor
        if value.device.type != "cpu":
            raise ValueError(f"argument {position} is on {value.device}; compiled code reads "
                             "tensors in CPU memory")
        array = value.detach().numpy() if str(value.dtype).removeprefix("torch.") in _NUMPY \
            else None
    elif type(value).__module__ == "numpy" and type(value).__name__ == "ndarray":
        array = value
    else:
        raise TypeError(f"argument {position} must be a tensor or NumPy array of shape "
                        f"{list(t.shape)} ({t.dtype}), not {type(value).__name__}")
    dtype = str(array.dtype) if array is not None else str(value.dtype).removeprefix("torch.")
    if dtype != t.dtype:
        raise TypeError(f"argument {position} holds {dtype}; the program was staged with "
                        f"{t.dtype}")
    if tuple(array.shape) != tuple(t.shape):
        raise ValueError(f"argument {position} has shape {list(array.shape)}; the program was "
                         f"staged with {list(t.shape)}")
    return np.ascontiguousarray(array)


def _list_argument(value, kind, position):
    """The tensors of the list parameter of IR type `kind` (a ListType) given as `value`, one
    after another in one contiguous NumPy array: a list or tuple of tensors or arrays (copied
    into it), or one tensor or array whose first dimension runs over the list (a view of it
    when it is contiguous and of the element's dtype)."""
    element = kind.element
    if isinstance(value, (list, tuple)):
        arrays = [_tensor_argument(x, element, f"{position} (element {i})")
                  for i, x in enumerate(value)]
        if not arrays:
            return np.empty((0, *element.shape), dtype=_NUMPY[element.dtype])
        return np.stack(arrays)
    shape = getattr(value, "shape", None)
    if shape is None or len(shape) != len(element.shape) + 1:
        raise TypeError(f"argument {position} must be a list of tensors or NumPy arrays of shape "
                        f"{list(element.shape)} ({element.dtype}), or one tensor or array of "
                        f"shape [n, {', '.join(map(str, element.shape))}], not "
                        f"{type(value).__name__}" + (f" of shape {list(shape)}" if shape else ""))
    return _tensor_argument(value, IRTensorType((shape[0], *element.shape), element.dtype),
                            position)


def _converter(ffi, kind, position):
    """The function giving the C argument of a parameter of `kind` from a Python value: plain
    values of the staged type take a short path, the rest goes through _convert. A list
    parameter gives two C arguments: the tensors' storage and how many there are."""
    if isinstance(kind, ListType):
        element = tuple(kind.element.shape)
        ctype, from_buffer, cast = _C_ELEMENTS[kind.element.dtype], ffi.from_buffer, ffi.cast
        pointer = ctype.replace("[]", " *")
        dtype = np.dtype(_NUMPY[kind.element.dtype])
        torch = sys.modules.get("torch")
        torch_dtype = getattr(torch, kind.element.dtype, None)

        def tensors(value):
            # one stacked tensor or array, contiguous and of the element's type: in place
            if (torch is not None and type(value) is torch.Tensor and value.dtype is torch_dtype
                    and value.shape[1:] == element and value.dim() == len(element) + 1
                    and value.is_cpu and value.is_contiguous()):
                return cast(pointer, value.data_ptr()), value.shape[0]
            if not (type(value) is np.ndarray and value.dtype is dtype
                    and value.shape[1:] == element and value.ndim == len(element) + 1
                    and value.flags.c_contiguous):
                value = _list_argument(value, kind, position)
            return from_buffer(ctype, value, require_writable=False), len(value)
        return tensors
    if isinstance(kind, IRTensorType):
        shape, dtype = tuple(kind.shape), np.dtype(_NUMPY[kind.dtype])
        ctype, from_buffer = _C_ELEMENTS[kind.dtype], ffi.from_buffer

        pointer, cast = ctype.replace("[]", " *"), ffi.cast
        torch = sys.modules.get("torch")
        torch_dtype = getattr(torch, kind.dtype, None)

        def tensor(value):
            if type(value) is np.ndarray:
                if not (value.dtype is dtype and value.shape == shape and value.flags.c_contiguous):
                    value = _tensor_argument(value, kind, position)
                # from_buffer keeps the array alive as long as the pointer it gives
                return from_buffer(ctype, value, require_writable=False)
            if (torch is not None and type(value) is torch.Tensor and value.dtype is torch_dtype
                    and value.shape == shape and value.is_cpu and value.is_contiguous()):
                return cast(pointer, value.data_ptr())   # the caller's `args` keep it alive
            return from_buffer(ctype, _tensor_argument(value, kind, position),
                               require_writable=False)
        return tensor
    if kind == "int":
        return lambda value: (value if type(value) is int and -2**63 <= value < 2**63
                              else _convert(value, kind, position))
    if kind == "float":
        return lambda value: value if type(value) is float else _convert(value, kind, position)
    return lambda value: _convert(value, kind, position)


def _convert(value, kind, position):
    """A Python argument as the C parameter of `kind`, or a TypeError naming it."""
    if isinstance(kind, IRTensorType):
        return _tensor_argument(value, kind, position)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"argument {position} must be an int, not {type(value).__name__}")
        if not -2**63 <= value < 2**63:
            raise OverflowError(f"argument {position} ({show_int(value)}) does not fit in 64 bits")
        return value
    if kind == "float":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"argument {position} must be a float, not {type(value).__name__}")
        return float(value)
    if kind == "bool":
        return 1 if value else 0
    raise TypeError(f"argument {position}: unsupported kind {kind}")


class ProgramState:
    """The state of a compiled program (`ht_new`, freed with it): the memory of its slots,
    which hytorch.torch_bridge reads and writes, and the status of a run."""

    def __init__(self, ffi, lib, name, raises=()):
        self._ffi, self._lib, self.name = ffi, lib, name
        self.raises = raises   # (exception name, message) of each raise of the program
        self._views = {}
        with _ONE_CALL_AT_A_TIME:   # (a failing ht_new sets the library's one last error)
            self.pointer = lib.ht_new()
        if self.pointer == ffi.NULL:
            self.pointer = None
            raise MemoryError(f"{name}: could not allocate the compiled program's state")

    def array(self, index, numel, dtype):
        """Slot `index` as a numpy array of `numel` `dtype`s over the C memory (made once:
        ht_slot gives the memory ht_new made, also while the slot is bound elsewhere)."""
        key = (index, numel, dtype)
        if key not in self._views:
            pointer = self._lib.ht_slot(self.pointer, index)
            size = numel * np.dtype(_NUMPY[dtype]).itemsize
            self._views[key] = np.frombuffer(self._ffi.buffer(pointer, size), dtype=_NUMPY[dtype])
        return self._views[key]

    def owning_array(self, index, numel, dtype):
        """Slot `index` as a numpy array over the C memory that keeps this state (and so that
        memory) alive as long as it or any view of it is: for arrays handed to users."""
        if numel == 0:
            return np.empty(0, dtype=_NUMPY[dtype])
        address = int(self._ffi.cast("uintptr_t", self._lib.ht_slot(self.pointer, index)))
        memory = (ctypes.c_char * (numel * np.dtype(_NUMPY[dtype]).itemsize)).from_address(address)
        memory.state = self
        return np.frombuffer(memory, dtype=_NUMPY[dtype])

    def tensor(self, index, numel, dtype, torch):
        """Slot `index` as a flat torch tensor over the same memory (made once, as `array`)."""
        key = ("torch", index, numel, dtype)
        if key not in self._views:
            self._views[key] = torch.from_numpy(self.array(index, numel, dtype))
        return self._views[key]

    def bind(self, index, address):
        """Point tensor slot `index` at memory of the caller's (an address), or back at the
        state's own (None)."""
        pointer = self._ffi.NULL if address is None else self._ffi.cast("void *", address)
        if self._lib.ht_bind_slot(self.pointer, index, pointer) != 0:
            raise ValueError(f"{self.name}: slot {index} cannot be bound")

    def flag(self, index):
        """Slot `index` as an int64_t *."""
        if index not in self._views:
            self._views[index] = self._ffi.cast("int64_t *", self._lib.ht_slot(self.pointer, index))
        return self._views[index]

    def bind_loader(self, index, spec):
        """Give loader slot `index` the data of `spec` (a loader's `c_spec()`); returns the
        arrays the C code reads, which must stay alive while it runs."""
        images = np.ascontiguousarray(spec.images)
        labels = np.ascontiguousarray(spec.labels)
        self.check(self._lib.ht_bind_loader(
            self._lib.ht_slot(self.pointer, index), self._ffi.from_buffer("uint8_t[]", images),
            self._ffi.from_buffer("uint8_t[]", labels), spec.count, spec.rows, spec.cols,
            spec.batch_size, int(spec.shuffle), int(spec.drop_last), spec.mean, spec.std,
            spec.rng_state))
        return images, labels

    def loader_rng_state(self, index):
        return self._lib.ht_loader_rng_state(self._lib.ht_slot(self.pointer, index))

    def check(self, status):
        """Raise what a run or runtime call that returned `status` failed with, if it failed."""
        if status == HT_OK:
            return
        message = self._ffi.string(self._lib.ht_last_error()).decode(errors="replace")
        if status == HT_INTERRUPTED:
            raise KeyboardInterrupt(f"{self.name}: {message}")
        if status == HT_RAISED:   # the error is "raise SITE"
            raise raised_exception(*self.raises[int(message.split()[1])], self.name)
        if status == HT_ZERO_DIVISION:
            raise StagedZeroDivisionError(f"{self.name}: {message}")
        raise ExecutionError(f"{self.name}: {message}")

    def __del__(self):
        if getattr(self, "pointer", None) is not None:
            self._lib.ht_delete(self.pointer)
            self.pointer = None


class CompiledFunction:
    """A compiled IR program. Call it like the staged function (a tensor result comes back as
    a numpy array); `.ir`, `.rendered_ir` (the IR after the fusion, type and autodiff passes:
    what was rendered, every backward pass written out in it; `.backward_ir` is the same),
    `.c_source`, `.staged_source` and `.so_path` show what it was made from,
    `.tensor(name)` reads a tensor of its state."""

    def __init__(self, program, rendered, build, ffi, lib):
        self.program = program
        self.c_source = rendered["source"]
        self.rendered_ir = self.backward_ir = rendered["rendered_ir"]
        self.result_kind = rendered["result_kind"]
        self.result_shape = rendered["result_shape"]
        self.slots = rendered["slots"]
        self.arg_kinds = [_arg_kind(t) for t in program.arg_types]
        self.so_path, self.cached, self.build_seconds = build.path, build.cached, build.seconds
        self.staged_from = None  # the function staged, when `stage` made it
        self._ffi, self._lib = ffi, lib
        self._set_num_threads = _runtime_function(lib, "ht_set_num_threads")
        _library_threads.pop(self.so_path, None)   # (the library may be loaded anew)
        self._state = ProgramState(ffi, lib, program.name, rendered["raises"])
        # Nothing lifted, nothing to copy in or out: the call skips the bridge (and holding
        # back Ctrl-C around it), which costs more than a small program's C.
        self._bridge = TorchBridge(program, self.slots) if self.slots else None
        self._converters = [_converter(ffi, k, i + 1) for i, k in enumerate(self.arg_kinds)
                            if k != "object"]
        self._positions = [i for i, k in enumerate(self.arg_kinds) if k != "object"]
        self._list_params = any(isinstance(k, ListType) for k in self.arg_kinds)
        self._tensor_positions = [i for i, k in enumerate(self.arg_kinds)
                                  if isinstance(k, (IRTensorType, ListType))]
        self._prints = "ht_print" in self.c_source

    @property
    def name(self):
        return self.program.name

    @functools.cached_property
    def ir(self):
        """The program's IR text (printed when first read: long for unrolled loops)."""
        return str(self.program)

    @property
    def staged_source(self):
        """The Python of the defstaged rewrite it was staged from (None for other functions),
        made when first read: it costs more than loading a cached program."""
        return getattr(self.staged_from, "staged_source", None)

    def tensor(self, name):
        """The values the program's state holds for the top-level tensor `name` (a live view,
        not a copy): its initial values, or what a call copied in or trained. (A call reads and
        trains a torch tensor laid out as the state's in its own memory: then its values are
        not here but in the tensor.)"""
        for i, s in enumerate(self.slots):
            if s["role"] == SlotRole.TENSOR and s["sym"] == str(name):
                return self._state.owning_array(i, s["numel"], s["dtype"]).reshape(s["shape"])
        raise KeyError(f"{self.name} has no top-level tensor {name}")

    # ---- calling
    def __call__(self, *args):
        if len(args) != len(self.arg_kinds):
            raise TypeError(f"{self.name}() takes {len(self.arg_kinds)} argument(s) "
                            f"but {len(args)} were given")
        c_args = [convert(args[i]) for convert, i in zip(self._converters, self._positions)]
        if self._list_params:  # a list's storage and length are two C arguments
            c_args = [c for a in c_args for c in (a if isinstance(a, tuple) else (a,))]
        result = None
        if self.result_kind == "tensor":
            result, pointer = self._new_result(args)
            c_args.append(pointer)
        elif self.result_kind != "none":
            result = self._ffi.new(f"{_C_TYPES[self.result_kind]} *")
            c_args.append(result)
        if self._prints:
            sys.stdout.flush()  # keep Python's and C's output in order
        with _ONE_CALL_AT_A_TIME:
            status = self._run(args, c_args)
            if status != HT_OK:
                self._state.check(status)  # (the last error is the runtime's, one per library)
        if self.result_kind == "tensor":
            return result
        if result is None:
            return result
        value = result[0]
        if self.result_kind == "str":
            return self._ffi.string(value).decode("utf-8", "surrogatepass")  # as c-string wrote it
        return bool(value) if self.result_kind == "bool" else value

    def _run(self, args, c_args):
        """Run the program on `c_args` at the current thread count, values of the objects in
        `args` copied in before and back out after; its status."""
        if self._set_num_threads is not None:
            threads = get_num_threads()
            if _library_threads.get(self.so_path) != threads:
                self._set_num_threads(threads)
                _library_threads[self.so_path] = threads
        if self._bridge is None:
            return self._lib.ht_run(self._state.pointer, *c_args)
        with _sigint_deferred() if self._bridge.writes_back else _NOTHING_TO_LOSE:
            keep_alive = self._bridge.copy_in(self._state, args)
            try:
                return self._lib.ht_run(self._state.pointer, *c_args)
            finally:
                self._bridge.copy_out(self._state, args)
                del keep_alive

    def _new_result(self, args):
        """The array a tensor result is written into, its C pointer, and the array as the
        caller gets it: a torch tensor (sharing its memory) when a tensor parameter was given
        one, else the NumPy array. (torch.from_numpy of np.empty costs less than torch.empty.)"""
        shape, dtype = self.result_shape
        result = np.empty(shape, dtype=_NUMPY[dtype])
        pointer = self._ffi.from_buffer(_C_ELEMENTS[dtype], result)
        torch = sys.modules.get("torch")
        if torch is not None:
            for i in self._tensor_positions:
                if _holds_torch(args[i], self.arg_kinds[i], torch):
                    return torch.from_numpy(result), pointer
        return result, pointer

    def __repr__(self):
        return f"<compiled {self.name} from {self.so_path}>"


def _holds_torch(arg, kind, torch):
    """Whether the argument of a tensor or list parameter (`kind`) was given as torch tensors."""
    if isinstance(arg, torch.Tensor):
        return True
    return (isinstance(kind, ListType) and isinstance(arg, (list, tuple))
            and any(isinstance(x, torch.Tensor) for x in arg))


def _runtime_function(lib, name):
    """The runtime's function `name` in a model's library, or None: the linker leaves out the
    runtime's parts a model does not use (ht_machine.c comes with the matrix products)."""
    try:
        return getattr(lib, name)
    except AttributeError:
        return None


@functools.lru_cache(maxsize=128)
def _ffi_for(cdef):
    """One cffi FFI per declaration text: parsing it is most of what loading a cached program
    costs."""
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    return ffi


def _build_and_open(ffi, source, extra_flags):
    """Build `source` (or find it in the cache) and open the library; a cached library that
    does not open is rebuilt, once."""
    build = build_shared(source, extra_flags)
    while True:
        try:
            return build, ffi.dlopen(str(build.path))
        except OSError as e:
            if not build.cached:
                raise BuildError(f"the compiled library {build.path} does not load: {e}") from None
        build = build_shared(source, extra_flags, replace=True)


def render_program(program):
    """An IRProgram's C and what comes with it (backend/c_render.hy's render-c), unbuilt."""
    return render_c(program.node, [_arg_kind(t) for t in program.arg_types], loader_dims(program))


def compile_program(program, extra_flags=()):
    """Render, build (or reuse) and load an IRProgram."""
    rendered = render_program(program)
    ffi = _ffi_for(rendered["cdef"] + RUNTIME_CDEF)
    build, lib = _build_and_open(ffi, rendered["source"], extra_flags)
    return CompiledFunction(program, rendered, build, ffi, lib)
