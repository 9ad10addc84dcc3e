"""How compiled code uses the machine: its threads and the vector unit the runtime was built for.

    hytorch.set_num_threads(2)     # or HYTORCH_THREADS=2 in the environment
    hytorch.get_num_threads()      # -> 2
    hytorch.machine.vector_isa()   # -> "avx512", "avx2", "neon", "sse2", ...

Matrix products of a batch of at least 16 samples are split over up to this many threads (the
caller's included) by output tiles, so results are the same, bit for bit, whatever the count;
smaller batches (batch-1 training) stay on the calling thread. The default is one thread, or
$HYTORCH_THREADS when it is set. Every compiled model links its own copy of the C runtime, so
the setting is handed to a model at each call.
"""
import functools
import os

ENVIRONMENT_VARIABLE = "HYTORCH_THREADS"
MAX_THREADS = 64  # HT_MAX_THREADS of c_runtime/ht_machine.h

# The runtime's functions that calls of a compiled model use (c_runtime/ht_machine.h).
RUNTIME_CDEF = """
const char *ht_vector_isa(void);
void ht_set_num_threads(int n);
int ht_get_num_threads(void);
void ht_settle(void);
"""

_chosen = None  # set by set_num_threads


def _checked(n, source):
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_THREADS:
        raise ValueError(f"{source}: the number of threads must be a whole number from 1 to "
                         f"{MAX_THREADS}, not {n!r}")
    return n


def _from_environment():
    return _parsed(os.environ.get(ENVIRONMENT_VARIABLE, ""))


@functools.lru_cache(maxsize=8)
def _parsed(text):
    """The thread count $HYTORCH_THREADS's `text` says (read at every call: parsed once)."""
    text = text.strip()
    if not text:
        return 1
    try:
        n = int(text)
    except ValueError:
        n = text
    return _checked(n, f"${ENVIRONMENT_VARIABLE}={text!r}")


def set_num_threads(n):
    """Let compiled code use up to `n` threads (1 to 64) from its next call on; overrides
    $HYTORCH_THREADS."""
    global _chosen
    _chosen = _checked(n, "set_num_threads")


def get_num_threads():
    """The number of threads compiled code may use: set_num_threads's, else
    $HYTORCH_THREADS's, else 1."""
    return _chosen if _chosen is not None else _from_environment()


@functools.lru_cache(maxsize=None)
def vector_isa():
    """The vector instructions the C runtime is compiled for on this machine, as models link
    it: "avx512", "avx2", "avx", "neon", "sse2" or "generic". Builds (once, cached) a program
    that asks the runtime."""
    import cffi

    from hytorch.build import build_shared
    source = ('#include "hytorch_rt.h"\n'
              'HT_EXPORT const char *ht_isa_probe(void) { return ht_vector_isa(); }\n')
    ffi = cffi.FFI()
    ffi.cdef("const char *ht_isa_probe(void);")
    lib = ffi.dlopen(str(build_shared(source).path))
    return ffi.string(lib.ht_isa_probe()).decode()
