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
from hytorch import builder, stand_ins
from hytorch.cells import Cell
from hytorch.ir.syntax import Sym, print_ir
from hytorch.errors import HyTorchError, StagingError
from hytorch.source_location import traceback_location, user_location
from hytorch.staged_function import staged  # noqa: F401  (re-exported: hytorch.staged)
from hytorch.staged_print import StagedFormat, stage_format, stage_print
from hytorch.values import (UNBOUND, Rep, Staged, StagedStr, _Sentinel, atom, is_staged,
                            out_of_scope, scalar_kind, value_kind)

__all__ = ["Frame", "Vars", "stage_if", "stage_while", "stage_for", "stage_print",
           "stage_format", "stage_and", "stage_or", "stage_not", "loop_break", "loop_continue",
           "return_from", "Return", "unsupported", "range", "enumerate", "len", "UNBOUND", "raising",
           "try_body", "STAGING_SIGNALS"]

_builtin_range, _builtin_enumerate, _builtin_len = range, enumerate, len


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


# Exceptions of staging itself: a `try` in staged code must let them through (the rewrite
# puts `(except [_hyt.STAGING-SIGNALS] (raise))` first).
STAGING_SIGNALS = (HyTorchError, _Break, Return, RecursionError)


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


class _Raises:
    """What a staged block gives when it ends in a `raise`: no value at all."""

    def __repr__(self):
        return "<raises>"


RAISES = _Raises()

# A raising branch's result in the IR, in the kind of the other branch (never used).
_RAISING_BRANCH_RESULT = {None: None, "missing": None, "bool": False, "int": 0, "float": 0.0,
                          "str": ""}


def _block_value(x, where):
    if isinstance(x, Staged) or x is None or value_kind(x) is not None:
        return atom(x)
    raise StagingError(f"a staged branch cannot produce a {type(x).__name__} ({x!r:.60})", where)


def _if_kind(results, where):
    """The kind of the value of an `if` whose branches gave `results` (one that raises gives
    none): None when no branch has a value, "missing" when only one has."""
    kinds = {value_kind(r) for r in results if r is not RAISES}
    if not kinds or kinds == {None}:
        return None
    if None in kinds:
        return "missing"
    if "str" in kinds and kinds != {"str"}:
        raise StagingError("one branch of this staged `if` gives a string and the other a "
                           "number; a staged value has one type", where)
    return "str" if "str" in kinds else _join(kinds)


def _emit_if(st, test, blocks, results, where):
    """`(if TEST THEN ELSE)` of two staged blocks; returns its symbol and its kind."""
    kind = _if_kind(results, where)
    for block, result in zip(blocks, results):
        block.result = (_RAISING_BRANCH_RESULT[kind] if result is RAISES
                        else _block_value(result, where))
    return st.emit([Sym("if"), test.sym, blocks[0].node(), blocks[1].node()]), kind


def _staged_value(sym, kind):
    return StagedStr(sym) if kind == "str" else Rep(sym, kind)


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
        block, result = _in_block(st, frame, vars, vars.names, _guard_block(branch, where))
        blocks.append(block)
        results.append(result)
    sym, kind = _emit_if(st, test, blocks, results, where)
    _after_block(frame, vars, local, where)
    if kind is None:
        return None
    if kind == "missing":
        return _Sentinel(f"the `if` at {where} has no value on one of its branches (None), so its "
                         "value cannot be used; give both branches a number")
    return _staged_value(sym, kind)


def _join(kinds):
    """The kind of a value that is one of `kinds`: bool < int < float."""
    return "float" if "float" in kinds else ("int" if "int" in kinds else "bool")


def _guard_block(fn, where):
    """`fn` as the body of a staged block (a branch, a loop body). A loop exit or a `return`
    cannot leave it (StagingError). An exception from a `raise` form ends the block with a
    run-time `(raise TYPE MESSAGE)`, and the block gives RAISES; any other exception is a
    StagingError, as only the compiled code would know whether to raise it."""
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
        except STAGING_SIGNALS:
            raise
        except Exception as e:
            return _raise_at_run_time(e, where)
    return guarded


# ---------------------------------------------------------------- raise and try

_RAISED_AT = "_hytorch_raised_at"


def raising(exception, where):
    """`(raise EXC)` in defstaged code raises EXC marked as the program's own, with the place
    of the form: raised inside a staged block, it becomes `(raise TYPE MESSAGE)` in the IR."""
    if isinstance(exception, type) and issubclass(exception, BaseException):
        exception = exception()
    if isinstance(exception, BaseException):
        setattr(exception, _RAISED_AT, where)
    return exception


def exception_name(cls):
    """How the IR names an exception class: `ValueError`, or `module.Class` if not built in."""
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _raise_at_run_time(exception, block_where):
    where = getattr(exception, _RAISED_AT, None)
    if where is None:
        raise StagingError(
            f"{type(exception).__name__}: {exception} was raised while staging code that runs "
            f"only when a staged condition holds (the block at {block_where}); only a `raise` "
            "form in defstaged code can become an error of the compiled code",
            traceback_location(exception.__traceback__) or block_where) from exception
    if any(isinstance(a, (Staged, StagedFormat)) for a in exception.args):
        raise StagingError("the message of a `raise` in staged code must be known while staging; "
                           "it cannot show a staged value", where)
    args = exception.args
    message = args[0] if len(args) == 1 and isinstance(args[0], str) else str(exception)
    builder.current().emit([Sym("raise"), exception_name(type(exception)), message])
    return RAISES


class try_body:
    """The body of a `try` in staged code, `(try (with [(_hyt.try-body WHERE)] BODY...) ...)`.
    The body runs while staging, where its handlers catch what it raises; what it stages must
    not fail when the compiled code runs, where nothing catches: a StagingError if it may."""

    def __init__(self, where):
        self.where = where
        self.st = builder.current()

    def __enter__(self):
        if self.st is not None:
            self.block = self.st.blocks[-1]
            self.start = len(self.block.lets)
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.st is None or exc_type is not None:
            return False
        node, reason = _failing_node(self.block.lets[self.start:], self.st)
        if node is not None:
            text = print_ir(node)
            raise StagingError(
                f"this `try` cannot catch what its body stages: `{text:.80}` fails only when the "
                f"compiled code runs ({reason}), and compiled code has no `try`; test for that "
                "case with an `if` instead", self.where)
        return False


_DIVISIONS = ("/", "//", "%")
_SHIFTS = ("<<", ">>")


def _failing_node(lets, st):
    """The first node staged in `lets` (or in the blocks inside them) that can fail when the
    compiled code runs, and why; (None, None) if none can. These are the run-time checks
    backend/c_render.hy emits."""
    staged_functions = {d.sym for d in st.staged_defs.values()}
    stack = [rhs for _, rhs in reversed(lets)]
    while stack:
        node = stack.pop()
        if not isinstance(node, list) or not node:
            continue
        reason = _failure(node, staged_functions)
        if reason is not None:
            return node, reason
        stack.extend(reversed(node))
    return None, None


def _failure(node, staged_functions):
    head = node[0]
    if not isinstance(head, Sym):
        return None
    if head == "raise":
        return "a `raise` under staged control flow"
    if head in _DIVISIONS and not _nonzero_constant(node[2]):
        return "division by a value that may be zero"
    if head in _SHIFTS and not (isinstance(node[2], int) and node[2] >= 0):
        return "a shift by a count that may be negative"
    if head == "call" and node[1] in staged_functions:
        return "a staged function, whose calls are bounded in depth"
    return None


def _nonzero_constant(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x != 0


# ---------------------------------------------------------------- loops

def stage_while(frame, cond_fn, body_fn, vars, cond_reads, body_reads, where, else_fn=None,
                cond_assigns=()):
    """`(while cond body (else ...))`: runs at generation time while the test is ordinary;
    once the test is staged, the rest of the loop is emitted as an IR `while`. `else_fn`
    runs after a loop that ended without `break` (a staged loop cannot break);
    `cond_assigns` names the variables the test assigns (with `setx`)."""
    st = builder.current()
    vars = vars or _NO_VARS
    while True:
        point, values = st.checkpoint(), vars.get()
        test = cond_fn()
        if is_staged(test):
            st.rollback(point)
            vars.set(values)
            _emit_while(st, frame, cond_fn, body_fn, vars, cond_reads, body_reads, where,
                        cond_assigns)
            break
        if not test:
            break
        try:
            body_fn()
        except _Continue:
            continue
        except _Break:
            return None
    if else_fn is not None:
        else_fn()
    return None


def _emit_while(st, frame, cond_fn, body_fn, vars, cond_reads, body_reads, where, cond_assigns):
    # What the test assigns is set before each run of the body: a cell even if unbound.
    local = _materialize(frame, vars, st, where, cond_assigns)

    def cond():
        test = cond_fn()
        if scalar_kind(test) is None:
            raise StagingError("the test of this `while` is not a staged scalar", where)
        return test

    cond_block, test = _in_block(st, frame, vars, cond_reads, cond)
    cond_block.result = atom(test)
    body_block, _ = _in_block(st, frame, vars, body_reads, _guard_block(body_fn, where))
    st.emit([Sym("while"), cond_block.node(), body_block.node()])
    _after_block(frame, vars, local, where)
    return None


def stage_for(frame, iterable, body_fn, vars, body_reads, where, else_fn=None):
    """`(for [x xs] body (else ...))`: unrolled over an ordinary iterable; a staged iterable
    (a `range` with a staged bound, a data loader) emits its own loop. `else_fn` runs after
    a loop that ended without `break` (a staged loop cannot break)."""
    vars = vars or _NO_VARS
    iterable = stand_ins.stand_in(iterable)
    emit_loop = getattr(iterable, "__staged_for__", None)
    if emit_loop is not None:
        st = builder.current()
        local = _materialize(frame, vars, st, where)

        def run_block(fn):
            return _in_block(st, frame, vars, body_reads, fn)[0]

        emit_loop(run_block, _guard_block(body_fn, where), where)
        _after_block(frame, vars, local, where)
    else:
        for item in iterable:
            try:
                body_fn(item)
            except _Continue:
                continue
            except _Break:
                return None
    if else_fn is not None:
        else_fn()
    return None


class StagedRange:
    """`(range start stop step)` with a staged bound: a counted `while` over a cell."""

    def __init__(self, start, stop, step):
        if scalar_kind(step) != "int" or is_staged(step) or step == 0:
            raise StagingError("a staged range needs a constant, non-zero integer step")
        self.start, self.stop, self.step = start, stop, step

    def __iter__(self):
        raise StagingError("a `range` with a staged bound is a loop of the compiled code: only a "
                           "`for` can go over it (not a comprehension, `list`, `sum`, ...)",
                           user_location())

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
        for a in args:
            if scalar_kind(a) not in ("int", "bool"):
                # Python raises TypeError for a float bound, whatever its value.
                raise StagingError(f"range() takes ints; a {scalar_kind(a) or type(a).__name__} "
                                   "bound would raise TypeError", user_location())
        start, stop, step = (0, args[0], 1) if len(args) == 1 else (tuple(args) + (1,))[:3]
        return StagedRange(start, stop, step)
    return _builtin_range(*args)


def len(obj):
    """`len` that is staged, `(len XS)`, for a list whose length is known only at run time."""
    staged_len = getattr(obj, "__staged_len__", None)
    if staged_len is not None:
        return staged_len()
    return _builtin_len(obj)


def enumerate(iterable, start=0):
    """`enumerate` that keeps a staged loader staged (its loop index comes from the loop)."""
    staged_enumerate = getattr(stand_ins.stand_in(iterable), "__staged_enumerate__", None)
    if staged_enumerate is not None:
        return staged_enumerate(start)
    return _builtin_enumerate(iterable, start)


def stage_choice(test, then_fn, else_fn):
    """An IR `if` on staged `test` whose value is that of `then_fn()` or `else_fn()`."""
    st = builder.current()
    where = user_location()
    _check_truth(test)
    blocks, results = [], []
    for branch in (then_fn, else_fn):
        with st.block() as block:
            results.append(st.check_result(_guard_block(branch, where)()))
        blocks.append(block)
    if any(value_kind(r) in (None, "str") for r in results if r is not RAISES):
        raise StagingError("`and`/`or` of staged values needs numbers on both sides", where)
    sym, kind = _emit_if(st, test, blocks, results, where)
    return None if kind is None else Rep(sym, kind)


def _check_truth(x):
    """A staged value whose truth can be staged: a number (not a string or a tensor)."""
    if scalar_kind(x) is None:
        x._refuse("as a truth value (only a staged number's truth can be staged)")


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
        _check_truth(x)
        return Rep(builder.current().emit([Sym("=="), x.sym, 0]), "bool")
    return not x

