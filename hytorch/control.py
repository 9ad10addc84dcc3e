"""Staged control flow: the functions that `defstaged`'s rewrite calls.

Each one looks at its test or iterable: an ordinary Python value runs at generation time
(a `for` over a list unrolls, an `if` on a constant picks a branch); a staged value emits
IR. For example `(while (< i n) (setv i (+ i 1)))` with a staged `n` becomes

    stage_while(_hyt_frame, cond, body, Vars(["i"], get, set), ...)

which emits `new`/`set` for `i`, then `(while (begin ... (< x2 in)) (begin ... None))`.

Variables assigned under staged control flow become cells (`new`/`set`/`get`); inside
straight-line code the last value set is forwarded, so a cell is read (`get`) only where a
block starts or after a staged construct that may have changed it.
"""
from hytorch import builder
from hytorch.backend.ir import Sym
from hytorch.errors import StagingError
from hytorch.lift import stand_in
from hytorch.source_location import user_location
from hytorch.values import (UNBOUND, Rep, Staged, _Sentinel, atom, is_staged, out_of_scope,
                            scalar_kind)

__all__ = ["Frame", "Vars", "stage_if", "stage_while", "stage_for", "stage_print",
           "stage_format", "stage_and", "stage_or", "stage_not", "loop_break", "loop_continue",
           "return_from", "Return", "unsupported", "range", "enumerate", "UNBOUND"]

_builtin_range, _builtin_enumerate = range, enumerate


class Cell:
    """A mutable run-time variable (`new`), written with `set` and read with `get`."""

    def __init__(self, name, st):
        self.name = name
        self.kind = None
        self.sym = st.emit(Sym("new"))

    def set(self, value, where=None):
        kind = scalar_kind(value)
        if kind is None:
            raise StagingError(
                f"`{self.name}` is assigned under staged control flow, so it must hold a number "
                f"or a staged scalar, not {type(value).__name__} ({value!r:.60})", where)
        self.kind = kind if self.kind in (None, kind) else "float"
        builder.current().emit([Sym("set"), self.sym, atom(value)])

    def get(self):
        return Rep(builder.current().emit([Sym("get"), self.sym]), self.kind)


class Frame:
    """One activation of a rewritten function: its variables that are currently cells."""

    def __init__(self):
        self.cells = {}

    def assign(self, name, value):
        """`(setv name value)`: a `set` when `name` is a cell; returns the value to bind."""
        cell = self.cells.get(name)
        if cell is not None and builder.current() is not None:
            cell.set(value)
        return value


class Vars:
    """The variables a construct assigns: their names and closures to read and write them."""

    def __init__(self, names, getter, setter):
        self.names, self.get, self.set = names, getter, setter

    def values(self):
        return dict(zip(self.names, self.get()))

    def update(self, changes):
        if changes:
            current = self.values()
            current.update(changes)
            self.set([current[n] for n in self.names])


_NO_VARS = Vars([], lambda: [], lambda values: None)


class _Break(Exception):
    def __init__(self, where):
        self.where = where


class _Continue(_Break):
    pass


class Return(Exception):
    """A `return` from inside a rewritten block, carried to its function."""

    def __init__(self, frame, value):
        self.frame, self.value = frame, value


def loop_break(where):
    raise _Break(where)


def loop_continue(where):
    raise _Continue(where)


def return_from(frame, value=None, where=None):
    raise Return(frame, value)


def store_outside_blocks(value, where):
    """`(setv obj.attr value)` / `(setv (get d k) value)`: Python objects are changed while
    staging, once; inside staged control flow that is almost never what was meant."""
    st = builder.current()
    if st is not None and st.depth > 1:
        raise StagingError("setting an attribute or item inside staged control flow changes the "
                           "Python object once, while staging, not each time the compiled code "
                           "runs; keep such values in variables (they become cells)", where)
    return value


def unsupported(what, where):
    """Stands in the staged rewrite for a form that cannot be staged."""
    raise StagingError(f"`{what}` cannot be used inside a defstaged function", where)


def _materialize(frame, vars, st, where, declare=()):
    """Turn every bound variable of `vars` into a cell, and those in `declare` (assigned on
    every path of the construct) even when unbound; returns the names left block-local."""
    local = []
    values = vars.values()
    for name in vars.names:
        if name in frame.cells:
            continue
        value = values[name]
        if isinstance(value, _Sentinel) and name not in declare:
            local.append(name)
            continue
        cell = Cell(name, st)
        if not isinstance(value, _Sentinel):
            cell.set(value, where)
        frame.cells[name] = cell
    return local


def _read_cells(frame, vars, names):
    """Emit a `get` for each listed cell and bind the variable to it."""
    vars.update({n: frame.cells[n].get() for n in names if n in frame.cells})


def _after_block(frame, vars, local, where):
    """After a staged construct: re-read its cells; its block-local variables end here."""
    _read_cells(frame, vars, vars.names)
    vars.update({n: out_of_scope(n, where) for n in local})


def _in_block(st, frame, vars, reads, fn, *args):
    """Run `fn` in a new block after reading the cells it mentions; returns (block, result)."""
    saved_cells, saved_values = dict(frame.cells), vars.get()
    with st.block() as block:
        _read_cells(frame, vars, [n for n in reads if n in frame.cells])
        result = st.check_result(fn(*args))
    frame.cells = saved_cells
    vars.set(saved_values)
    return block, result


def _block_value(x, where):
    if isinstance(x, Staged) or x is None or scalar_kind(x) is not None:
        return atom(x)
    raise StagingError(f"a staged branch cannot produce a {type(x).__name__} ({x!r:.60})", where)


def stage_if(frame, test, then_fn, else_fn, vars, where, both=()):
    """`(if test then else)`: a Python `if` for an ordinary test, an IR `if` for a staged one.
    `both` names the variables both branches assign: they are cells even if unbound before."""
    if not is_staged(test):
        return then_fn() if test else else_fn()
    if scalar_kind(test) is None:
        raise StagingError(f"the test of this `if` is a staged {test.kind}, not a scalar", where)
    st = builder.current()
    vars = vars or _NO_VARS
    local = _materialize(frame, vars, st, where, both)
    blocks, results = [], []
    for branch in (then_fn, else_fn):
        block, result = _in_block(st, frame, vars, vars.names, _guard_loop_exits(branch, where))
        block.result = _block_value(result, where)
        blocks.append(block)
        results.append(result)
    sym = st.emit([Sym("if"), test.sym, blocks[0].node(), blocks[1].node()])
    _after_block(frame, vars, local, where)
    kinds = [scalar_kind(r) for r in results]
    if kinds == [None, None]:
        return None
    if None in kinds:
        return _Sentinel(f"the `if` at {where} has no value on one of its branches (None), so its "
                         "value cannot be used; give both branches a number")
    return Rep(sym, _join(kinds))


def _join(kinds):
    """The kind of a value that is one of `kinds`: bool < int < float."""
    return "float" if "float" in kinds else ("int" if "int" in kinds else "bool")


def _guard_loop_exits(fn, where):
    def guarded(*args):
        try:
            return fn(*args)
        except _Break as e:
            word = "continue" if isinstance(e, _Continue) else "break"
            raise StagingError(f"`{word}` inside staged control flow is not supported "
                               "(only in loops that run at generation time)", e.where) from None
        except Return:
            raise StagingError("`return` inside staged control flow is not supported: make the "
                               "value of the `if` (or a variable set before it) the result",
                               where) from None
    return guarded


def stage_while(frame, cond_fn, body_fn, vars, cond_reads, body_reads, where):
    """`(while cond body)`: runs at generation time while the test is ordinary; once the
    test is staged, the rest of the loop is emitted as an IR `while`."""
    st = builder.current()
    vars = vars or _NO_VARS
    while True:
        point, values = st.checkpoint(), vars.get()
        test = cond_fn()
        if is_staged(test):
            st.rollback(point)
            vars.set(values)
            return _emit_while(st, frame, cond_fn, body_fn, vars, cond_reads, body_reads, where)
        if not test:
            return None
        try:
            body_fn()
        except _Continue:
            continue
        except _Break:
            return None


def _emit_while(st, frame, cond_fn, body_fn, vars, cond_reads, body_reads, where):
    local = _materialize(frame, vars, st, where)

    def cond():
        test = cond_fn()
        if scalar_kind(test) is None:
            raise StagingError("the test of this `while` is not a staged scalar", where)
        return test

    cond_block, test = _in_block(st, frame, vars, cond_reads, cond)
    cond_block.result = atom(test)
    body_block, _ = _in_block(st, frame, vars, body_reads, _guard_loop_exits(body_fn, where))
    st.emit([Sym("while"), cond_block.node(), body_block.node()])
    _after_block(frame, vars, local, where)
    return None


def stage_for(frame, iterable, body_fn, vars, body_reads, where):
    """`(for [x xs] body)`: unrolled over an ordinary iterable; a staged iterable (a
    `range` with a staged bound, a data loader) emits its own loop."""
    vars = vars or _NO_VARS
    iterable = stand_in(iterable)
    emit_loop = getattr(iterable, "__staged_for__", None)
    if emit_loop is not None:
        st = builder.current()
        local = _materialize(frame, vars, st, where)

        def run_block(fn):
            return _in_block(st, frame, vars, body_reads, fn)[0]

        emit_loop(run_block, _guard_loop_exits(body_fn, where), where)
        _after_block(frame, vars, local, where)
        return None
    for item in iterable:
        try:
            body_fn(item)
        except _Continue:
            continue
        except _Break:
            break
    return None


class StagedRange:
    """`(range start stop step)` with a staged bound: a counted `while` over a cell."""

    def __init__(self, start, stop, step):
        if scalar_kind(step) != "int" or is_staged(step) or step == 0:
            raise StagingError("a staged range needs a constant, non-zero integer step")
        self.start, self.stop, self.step = start, stop, step

    def __staged_for__(self, run_block, body, where):
        st = builder.current()
        counter = Cell("range counter", st)
        counter.set(self.start, where)
        with st.block() as cond_block:
            test_op = Sym("<") if self.step > 0 else Sym(">")
            cond_block.result = st.emit([test_op, counter.get().sym, atom(self.stop)])

        def step():
            i = counter.get()
            body(i)
            counter.set(i + self.step, where)
        body_block = run_block(step)
        st.emit([Sym("while"), cond_block.node(), body_block.node()])


def range(*args):
    """`range` that becomes a staged loop when a bound is staged."""
    if any(is_staged(a) for a in args):
        start, stop, step = (0, args[0], 1) if len(args) == 1 else (tuple(args) + (1,))[:3]
        return StagedRange(start, stop, step)
    return _builtin_range(*args)


def enumerate(iterable, start=0):
    """`enumerate` that keeps a staged loader staged (its loop index comes from the loop)."""
    staged_enumerate = getattr(stand_in(iterable), "__staged_enumerate__", None)
    if staged_enumerate is not None:
        return staged_enumerate(start)
    return _builtin_enumerate(iterable, start)


def stage_choice(test, then_fn, else_fn):
    """An IR `if` on staged `test` whose value is that of `then_fn()` or `else_fn()`."""
    st = builder.current()
    blocks, kinds = [], []
    for branch in (then_fn, else_fn):
        with st.block() as block:
            value = st.check_result(branch())
            block.result = _block_value(value, None)
        blocks.append(block)
        kinds.append(scalar_kind(value))
    if None in kinds:
        raise StagingError("`and`/`or` of staged values needs numbers on both sides",
                           user_location())
    return Rep(st.emit([Sym("if"), test.sym, blocks[0].node(), blocks[1].node()]), _join(kinds))


def stage_and(first, *rest_fns):
    """`(and a b ...)`: Python's `and` (a if a is falsy, else what follows), staged as an IR
    `if` once an operand is staged."""
    if not rest_fns:
        return first
    rest = lambda: stage_and(rest_fns[0](), *rest_fns[1:])
    if is_staged(first):
        return stage_choice(first, rest, lambda: first)
    return rest() if first else first


def stage_or(first, *rest_fns):
    """`(or a b ...)`: Python's `or` (a if a is truthy, else what follows), staged as an IR
    `if` once an operand is staged."""
    if not rest_fns:
        return first
    rest = lambda: stage_or(rest_fns[0](), *rest_fns[1:])
    if is_staged(first):
        return stage_choice(first, lambda: first, rest)
    return first if first else rest()


def stage_not(x):
    if is_staged(x):
        return Rep(builder.current().emit([Sym("=="), x.sym, 0]), "bool")
    return not x


from hytorch.staged_function import staged  # noqa: E402  (re-exported for the rewrite)
from hytorch.staged_print import stage_format, stage_print  # noqa: E402
