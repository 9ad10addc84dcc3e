"""What `defstaged` defines: a function that runs as plain Python, or stages when called
during a staging run.

    (defstaged power [b x] (if (= x 0) 1 (* b (power b (- x 1)))))
    (power 2 10)                       ; => 1024, plain Python
    (hytorch.lms-compile (fn [n] (power n 3)))   ; => (def ... (* in 1) ...)
"""
import contextlib
import functools
import sys
import types

from hytorch import builder, staged_recursion
from hytorch.stand_ins import stand_in
from hytorch.values import Staged


# Staged code nests as deep as the user's (an `if` in an `if` in ...), and rewriting,
# compiling and staging it take several Python frames a level: room for a few hundred levels.
RECURSION_LIMIT = 10_000


@contextlib.contextmanager
def deeper_recursion(limit=RECURSION_LIMIT):
    """Python's recursion limit raised to `limit` (never lowered) for the duration."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _abstract(value):
    """What a call's argument contributes to its identity while staging."""
    if isinstance(value, Staged):
        # A tensor's TensorType (shape, dtype, batch); vars() spares other staged values'
        # __getattr__, which makes a StagingError.
        return ("staged", type(value).__name__, value.kind, vars(value).get("type"))
    try:
        hash(value)
    except TypeError:
        return ("object", id(value))
    return ("value", type(value), _comparable(value))


def _comparable(value):
    """`value` as a key that equals another exactly when the two are the same constant: NaN
    equals NaN (the recursion `(f (- n 1) nan)` must be seen to repeat) and 0.0 is not -0.0."""
    if isinstance(value, float):
        return value.hex()
    if isinstance(value, tuple):
        return tuple((type(v), _comparable(v)) for v in value)
    return value


class StagedFunction:
    """A `defstaged` function: `plain` is the defn as written, `staged` its rewrite."""

    def __init__(self, plain, staged, name, source, staged_source, where):
        functools.update_wrapper(self, plain)
        self.plain, self.staged = plain, staged
        self.name, self.where = name, where
        self.original_source = source
        self.staged_source = staged_source

    def __call__(self, *args, **kwargs):
        st = builder.current()
        if st is None:
            return self.plain(*args, **kwargs)
        return self._inline(st, args, kwargs)

    def __get__(self, obj, objtype=None):
        return self if obj is None else types.MethodType(self, obj)

    def _inline(self, st, args, kwargs):
        """Run the rewrite, emitting IR in place: calls are inlined at generation time, except
        recursion that only ends at run time (see staged_recursion.py)."""
        args = [stand_in(a) for a in args]
        kwargs = {k: stand_in(v) for k, v in kwargs.items()}
        key = (id(self), tuple(map(_abstract, args)),
               tuple(sorted((k, _abstract(v)) for k, v in kwargs.items())))
        # A call of itself, with the same arguments, under staged control flow can only end
        # when the compiled code runs: it becomes a staged function (def and call).
        if key in st.staged_defs or any(k == key and st.depth > depth for k, depth in st.active_calls):
            return staged_recursion.call(self, st, key, args, kwargs)
        st.active_calls.append((key, st.depth))
        try:
            with deeper_recursion():
                return self.staged(*args, **kwargs)
        finally:
            st.active_calls.pop()

    def __repr__(self):
        return f"<defstaged {self.name} at {self.where}>"


def staged(staged_fn, name, source, staged_source, where):
    """Decorator used by `defstaged`'s expansion; `staged_source` is the Python of the
    rewrite, as `hy2py` shows it."""
    return lambda plain: StagedFunction(plain, staged_fn, name, source, staged_source, where)
