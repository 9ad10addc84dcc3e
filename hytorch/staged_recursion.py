"""Recursion that only ends at run time becomes a staged function: a `def` in the IR, called
with `call`, as snek-LMS did.

    (defstaged fact [n] (if (<= n 1) 1 (* n (fact (- n 1)))))
    ;; staged with an int: the first level inlines, the recursive call is (call fact0 (x1)),
    ;; and (let fact0 (def fact0 (in) (begin (begin ... (call fact0 (x2)) ...))) ...) is
    ;; bound at the start of the program.

Arguments that are staged scalars become the function's parameters; ordinary arguments are
part of its identity (calls with other ordinary values are other functions or inline).
"""
from hytorch.ir.syntax import Sym
from hytorch.errors import StagingError
from hytorch.staged_args import param_names
from hytorch.values import Rep, Staged, atom, scalar_kind

BEGIN, DEF, CALL = Sym("begin"), Sym("def"), Sym("call")


class StagedDef:
    """A staged function: its IR name, parameter positions and result kind."""

    def __init__(self, sym, positions):
        self.sym, self.positions = sym, positions
        # Assumed by the recursive calls while the body stages, then raised to what the body
        # gives: bool, then int, then float (the order in which arithmetic promotes them).
        self.result_kind = "bool"


def call(function, st, key, args, kwargs):
    """`(call NAME (ARGS))` of the staged function for `key`, defining it on first use."""
    staged_def = st.staged_defs.get(key)
    if staged_def is None:
        staged_def = _define(function, st, key, args, kwargs)
    staged_args = [args[i].sym for i in staged_def.positions]
    result = st.emit([CALL, staged_def.sym, staged_args])
    return None if staged_def.result_kind == "none" else Rep(result, staged_def.result_kind)


def _define(function, st, key, args, kwargs):
    if any(isinstance(v, Staged) for v in kwargs.values()):
        raise StagingError(f"`{function.name}` recurses on a staged keyword argument; pass "
                           "staged values positionally", function.where)
    positions = [i for i, a in enumerate(args) if isinstance(a, Staged)]
    for i in positions:
        if not isinstance(args[i], Rep):
            raise StagingError(f"`{function.name}` recurses on a staged {args[i].kind}; only "
                               "recursion on staged numbers can become a staged function",
                               function.where)
    staged_def = StagedDef(Sym(f"{function.name}{len(st.staged_defs)}"), positions)
    st.staged_defs[key] = staged_def
    params = [Sym(p) for p in param_names(len(positions))]
    for _ in range(3):  # until the result's kind is the one the recursive calls assumed
        inner = list(args)
        for i, p in zip(positions, params):
            inner[i] = Rep(p, args[i].kind)
        with st.separate_function(key):
            result = function.staged(*inner, **kwargs)
            st.root.result = atom(st.check_result(result), "result")
            body = st.root.node()
        kind = scalar_kind(result) or "none"
        if result is not None and scalar_kind(result) is None:
            raise StagingError(f"`{function.name}` returns a {type(result).__name__}; a staged "
                               "function returns a number or None", function.where)
        if kind == staged_def.result_kind:
            break
        staged_def.result_kind = kind
    st.hoist([DEF, staged_def.sym, params, [BEGIN, body]], name=staged_def.sym)
    return staged_def
