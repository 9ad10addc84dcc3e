"""What `defstaged` defines: a function that runs as plain Python, or stages when called
during a staging run.

    (defstaged power [b x] (if (= x 0) 1 (* b (power b (- x 1)))))
    (power 2 10)                       ; => 1024, plain Python
    (hytorch.lms-compile (fn [n] (power n 3)))   ; => (def ... (* in 1) ...)
"""
import ast
import functools
import types

from hytorch import builder, staged_recursion
from hytorch.lift import stand_in
from hytorch.values import Staged


def _abstract(value):
    """What a call's argument contributes to its identity while staging."""
    if isinstance(value, Staged):
        return ("staged", type(value).__name__, getattr(value, "kind", None),
                getattr(value, "shape", None))
    try:
        hash(value)
        return ("value", type(value), value)
    except TypeError:
        return ("object", id(value))


class StagedFunction:
    """A `defstaged` function: `plain` is the defn as written, `staged` its rewrite."""

    def __init__(self, plain, staged, name, source, staged_form, where):
        functools.update_wrapper(self, plain)
        self.plain, self.staged = plain, staged
        self.name, self.where = name, where
        self.original_source = source
        self._staged_form = staged_form

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
            return self.staged(*args, **kwargs)
        finally:
            st.active_calls.pop()

    @property
    def staged_source(self):
        """The Python of the staged rewrite, as `hy2py` shows it."""
        import hy
        from hy.compiler import hy_compile
        module = types.ModuleType("_hytorch_staged_source")
        tree = hy_compile(hy.read_many(self._staged_form), module, import_stdlib=False)
        return ast.unparse(tree)

    def __repr__(self):
        return f"<defstaged {self.name} at {self.where}>"


def staged(staged_fn, name, source, staged_form, where):
    """Decorator used by `defstaged`'s expansion."""
    return lambda plain: StagedFunction(plain, staged_fn, name, source, staged_form, where)
