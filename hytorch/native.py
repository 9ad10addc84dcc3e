"""Compiled programs as Python callables: render C, build (cached), load with cffi, call.

    f = compile_program(lms_compile(lambda n: n * 3))
    f(4)          # -> 12, computed by the loaded shared library
    f.c_source    # the generated C
"""
import sys

import cffi

from hytorch.backend.c_render import render_c
from hytorch.build import build_shared
from hytorch.errors import ExecutionError, HyTorchError
from hytorch.staged_args import SCALAR_KINDS, describe_type

HT_OK, HT_ERROR, HT_INTERRUPTED, HT_ZERO_DIVISION = 0, 1, 2, 3
_C_TYPES = {"int": "int64_t", "float": "double", "bool": "int"}


class StagedZeroDivisionError(ExecutionError, ZeroDivisionError):
    """Compiled code divided by zero."""


def _arg_kind(t):
    if t in SCALAR_KINDS:
        return SCALAR_KINDS[t]
    raise HyTorchError(f"cannot compile a parameter of type {describe_type(t)}")


def _convert(value, kind, position):
    """A Python argument as the C parameter of `kind`, or a TypeError naming it."""
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"argument {position} must be an int, not {type(value).__name__}")
        if not -2**63 <= value < 2**63:
            raise OverflowError(f"argument {position} ({value}) does not fit in 64 bits")
        return value
    if kind == "float":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"argument {position} must be a float, not {type(value).__name__}")
        return float(value)
    if kind == "bool":
        return 1 if value else 0
    raise TypeError(f"argument {position}: unsupported kind {kind}")


class CompiledFunction:
    """A compiled IR program. Call it like the staged function; `.ir`, `.c_source`,
    `.staged_source` and `.so_path` show what it was made from."""

    def __init__(self, program, rendered, build):
        self.program = program
        self.ir = str(program)
        self.c_source = rendered["source"]
        self.result_kind = rendered["result_kind"]
        self.arg_kinds = [_arg_kind(t) for t in program.arg_types]
        self.so_path, self.cached, self.build_seconds = build.path, build.cached, build.seconds
        self.staged_source = None
        self._ffi = cffi.FFI()
        self._ffi.cdef(rendered["cdef"])
        self._lib = self._ffi.dlopen(str(build.path))
        self._state = self._lib.ht_new()
        if self._state == self._ffi.NULL:
            raise MemoryError(f"{program.name}: could not allocate the compiled program's state")

    @property
    def name(self):
        return self.program.name

    def __call__(self, *args):
        if len(args) != len(self.arg_kinds):
            raise TypeError(f"{self.name}() takes {len(self.arg_kinds)} argument(s) "
                            f"but {len(args)} were given")
        c_args = [_convert(a, k, i + 1) for i, (a, k) in enumerate(zip(args, self.arg_kinds))]
        result = None
        if self.result_kind != "none":
            result = self._ffi.new(f"{_C_TYPES[self.result_kind]} *")
            c_args.append(result)
        sys.stdout.flush()  # keep Python's and C's output in order
        status = self._lib.ht_run(self._state, *c_args)
        if status != HT_OK:
            self._raise(status)
        if result is None:
            return None
        value = result[0]
        return bool(value) if self.result_kind == "bool" else value

    def _raise(self, status):
        message = self._ffi.string(self._lib.ht_last_error()).decode(errors="replace")
        if status == HT_INTERRUPTED:
            raise KeyboardInterrupt(f"{self.name}: {message}")
        if status == HT_ZERO_DIVISION:
            raise StagedZeroDivisionError(f"{self.name}: {message}")
        raise ExecutionError(f"{self.name}: {message}")

    def __del__(self):
        state = getattr(self, "_state", None)
        if state is not None and self._ffi is not None:
            self._lib.ht_delete(state)
            self._state = None

    def __repr__(self):
        return f"<compiled {self.name} from {self.so_path}>"


def compile_program(program):
    """Render, build (or reuse) and load an IRProgram."""
    arg_kinds = [_arg_kind(t) for t in program.arg_types]
    rendered = render_c(program.node, arg_kinds)
    return CompiledFunction(program, rendered, build_shared(rendered["source"]))
