"""HyTorch: PyTorch programs written in Hy, staged to the snek-LMS IR and compiled to C.

    (require hytorch [defstaged])
    (defstaged power [b x] (if (= x 0) 1 (* b (power b (- x 1)))))
    (setv cube (hytorch.stage (fn [n] (power n 3))))
    (cube 3)   ; => 27, computed by compiled C
"""
import hy  # noqa: F401  (lets Python import HyTorch's .hy modules)

from hytorch.errors import (BuildError, CCompileError, CompilerNotFound, ExecutionError,
                            HyTorchError, IRError, IRSyntaxError, StagingError)

__version__ = "0.1.0"

# `(require hytorch [defstaged])` reads the macros from here.
from hytorch.macros import defstaged as _defstaged_module  # noqa: E402

_hy_macros = {"defstaged": _defstaged_module._hy_macros["defstaged"]}

_API = {"lms_compile": "hytorch.api", "stage": "hytorch.api", "compile_ir": "hytorch.api",
        "parse_ir": "hytorch.api", "IRProgram": "hytorch.api",
        "staged": "hytorch.control",  # `staged`: the decorator `defstaged` expands to
        "set_num_threads": "hytorch.machine", "get_num_threads": "hytorch.machine",
        "TensorType": "hytorch.staged_args", "ListOf": "hytorch.staged_args"}


def __getattr__(name):
    # The staging API pulls in the backend; load it (and the rest) on first use, not on import.
    if name in _API:
        import importlib
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hytorch' has no attribute {name!r}")


__all__ = ["lms_compile", "stage", "compile_ir", "parse_ir", "set_num_threads", "get_num_threads",
           "TensorType", "ListOf",
           "StagingError", "HyTorchError", "IRSyntaxError", "IRError", "CCompileError",
           "CompilerNotFound", "BuildError", "ExecutionError"]
