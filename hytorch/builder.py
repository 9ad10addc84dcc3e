"""The IR builder: one staging run's symbol counter and its stack of open blocks.

    with Staging() as st:
        x = st.emit([Sym("*"), Sym("in"), 1])     # binds x0
    st.root_node()  ->  [begin, [let, x0, [*, in, 1], None]]

Numbering follows shared/ir.md: a nested block starts where its parent stands and the
parent resumes from the same number when the block ends.
"""
from contextlib import contextmanager

from hytorch.errors import StagingError
from hytorch.ir.syntax import Sym
from hytorch.source_location import user_location

LET, BEGIN = Sym("let"), Sym("begin")
MAX_LETS = 1_000_000  # beyond this, staging is unrolling something it should not

_current = None


def current():
    """The staging run in progress, or None when code runs eagerly."""
    return _current


class Block:
    """An open `(begin ...)`: its lets in order and, once closed, its result."""

    def __init__(self):
        self.lets = []
        self.result = None

    def node(self):
        """`(begin (let a A (let b B RESULT)))` as IR data."""
        chain = self.result
        for sym, rhs in reversed(self.lets):
            chain = [LET, sym, rhs, chain]
        return [BEGIN, chain]


class Staging:
    """One staging run. Use as a context manager to make it current."""

    def __init__(self):
        self.counter = 0
        self.tensor_counter = 0
        self.root = Block()
        self.blocks = [self.root]
        self.hoisted = []          # lets that must come first in the root block
        self.active_calls = []     # (key, block depth) of staged functions being inlined
        self.lifted = {}           # id(python object) -> staged stand-in (parameters, optimizers)
        self.lifted_objects = []   # keeps lifted objects alive and in order
        self.module_buffers = set()  # ids of the buffers of lifted modules (parameter_calls.py)
        self.staged_defs = {}      # call key -> StagedDef (recursion that ends at run time)
        self.defined_in = {}       # id(symbol) -> (the symbol, the block that binds it)
        self.size = 0              # lets emitted, bounded by MAX_LETS
        self._outer = None

    def __enter__(self):
        global _current
        self._outer, _current = _current, self
        return self

    def __exit__(self, *exc):
        global _current
        _current = self._outer
        return False

    def fresh(self, prefix="x"):
        """A new symbol: x0, x1, ... (or t0, t1, ... for loader inputs, as snek-LMS did)."""
        if prefix == "t":
            n, self.tensor_counter = self.tensor_counter, self.tensor_counter + 1
        else:
            n, self.counter = self.counter, self.counter + 1
        return Sym(f"{prefix}{n}")

    def emit(self, rhs):
        """Bind `rhs` to a fresh symbol in the innermost open block and return the symbol."""
        self._check_scope(rhs)
        self.size += 1
        if self.size > MAX_LETS:
            raise StagingError(
                f"the staged program grew past {MAX_LETS} lets: a loop or recursion on ordinary "
                "values unrolls at generation time; make its bound staged (a parameter) to get a "
                "compiled loop instead", user_location())
        sym = self.fresh()
        self.blocks[-1].lets.append((sym, rhs))
        self._define(sym)
        return sym

    def check_result(self, value):
        """A block's result must exist in the block (see _check_scope)."""
        if hasattr(value, "sym"):
            self._check_scope(value.sym)
        return value

    def define_here(self, *syms):
        """Symbols a loop binds for its body (its index, its batch)."""
        for sym in syms:
            self._define(sym)

    def _define(self, sym):
        # The symbol itself is kept: an id is unique only while its object lives.
        self.defined_in[id(sym)] = (sym, self.blocks[-1])

    def _check_scope(self, rhs):
        """A value made inside a staged block does not exist after it: using it there (kept
        in a Python object, a nonlocal variable, ...) is a StagingError, not broken IR."""
        for sym in _operands(rhs):
            block = self.defined_in.get(id(sym), (None, None))[1]
            if block is not None and not any(block is b for b in self.blocks):
                raise StagingError(
                    f"a staged value ({sym}) made inside a staged block (an `if` branch or a loop "
                    "body) is used after that block ended; keep values that must outlive a block "
                    "in variables assigned before it", user_location())

    def hoist(self, rhs, name=None):
        """Bind `rhs` at the start of the root block (objects first met inside a loop, staged
        functions), under `name` or a fresh `p` symbol."""
        sym = name if name is not None else Sym(f"p{len(self.hoisted)}")
        self.hoisted.append((sym, rhs))
        return sym

    @contextmanager
    def separate_function(self, key):
        """Stage the body of a staged function: its own root block and numbering from x0;
        recursive calls of `key` inside it are calls."""
        saved = (self.counter, self.tensor_counter, self.root, self.blocks, self.active_calls)
        self.counter, self.tensor_counter = 0, 0
        self.root = Block()
        self.blocks = [self.root]
        self.active_calls = [(key, 1)]
        try:
            yield
        finally:
            self.counter, self.tensor_counter, self.root, self.blocks, self.active_calls = saved

    @property
    def depth(self):
        return len(self.blocks)

    @contextmanager
    def block(self):
        """Open a nested block; numbering restarts from here when it closes."""
        start = self.counter
        b = Block()
        self.blocks.append(b)
        try:
            yield b
        finally:
            self.blocks.pop()
            self.counter = start

    def checkpoint(self):
        return (self.counter, self.tensor_counter, len(self.blocks[-1].lets), len(self.hoisted),
                len(self.staged_defs), len(self.lifted), len(self.lifted_objects))

    def rollback(self, point):
        """Undo what was staged since `point`, with the staged functions defined and the
        objects lifted since: their lets are gone, so they must be defined or lifted again."""
        (self.counter, self.tensor_counter, n_lets, n_hoisted, n_defs, n_lifted,
         n_lifted_objects) = point
        del self.blocks[-1].lets[n_lets:]
        del self.hoisted[n_hoisted:]
        for table, n in ((self.staged_defs, n_defs), (self.lifted, n_lifted)):
            for key in list(table)[n:]:
                del table[key]
        del self.lifted_objects[n_lifted_objects:]

    def bindings(self):
        """What the compiled code needs from Python: lifted objects by their IR symbol."""
        return {sym: obj for sym, obj in self.lifted_objects}

    def root_node(self):
        """The finished root block, hoisted lets first."""
        node = self.root.node()
        if self.hoisted:
            merged = Block()
            merged.lets = self.hoisted + self.root.lets
            merged.result = self.root.result
            node = merged.node()
        return node


def _operands(node):
    """The symbols a node reads (not those inside its nested blocks or a loop's bindings)."""
    if isinstance(node, Sym):
        yield node
    elif isinstance(node, list) and node[:1] != [BEGIN]:
        items = node[:2] if node[:1] == [Sym("for_dataloader")] else node
        for item in items:
            yield from _operands(item)
