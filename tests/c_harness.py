"""Builds c_runtime/ into a throwaway shared library for kernel and data tests.

    ffi, lib = load_runtime('''float ht_example(float*, int64_t);''')

The library is compiled once per set of extra flags and opened once per cdef.
"""
import os
import pathlib
import subprocess
import tempfile

import cffi

from hytorch.build import FLAGS

RUNTIME_DIR = pathlib.Path(__file__).resolve().parent.parent / "c_runtime"
_libraries = {}
_loaded = {}


def _build(extra_flags):
    if extra_flags not in _libraries:
        sources = sorted(str(p) for p in RUNTIME_DIR.glob("*.c"))
        out = pathlib.Path(tempfile.mkdtemp(prefix="ht_rt_")) / "libht_test.so"
        cc = os.environ.get("CC", "cc")
        # The flags compiled models use, so the kernels are tested as they run.
        cmd = [cc, *FLAGS, "-shared", "-Wall", "-I", str(RUNTIME_DIR), *extra_flags, *sources,
               "-o", str(out), "-lm"]
        subprocess.run(cmd, check=True)
        _libraries[extra_flags] = out
    return _libraries[extra_flags]


def load_runtime(cdef, extra_flags=()):
    """Compile every c_runtime/*.c into one .so (once per flag set) and dlopen it with `cdef`."""
    key = (cdef, tuple(extra_flags))
    if key not in _loaded:
        ffi = cffi.FFI()
        ffi.cdef(cdef)
        _loaded[key] = (ffi, ffi.dlopen(str(_build(tuple(extra_flags)))))
    return _loaded[key]
