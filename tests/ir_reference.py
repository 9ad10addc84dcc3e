"""A reference evaluator for HyTorch's scalar IR, written from shared/ir.md and README's IR
table, for fuzzing `hytorch.compile_ir` (tests/test_fuzz_ir.py).

    reference = Reference(read("(def f (in) (begin (begin (let x0 (* in 2) x0))))"), ["int"])
    reference.run([21])      # -> Run(value=42, output=b"", error=None)

Semantics: a `let` binds a name in its chain's scope (an inner block's scope shadows); values
are statically typed (int, float, bool; `none` for statements): arithmetic treats a bool as an
int, mixes int and float as float, `/` is float; a cell's type is the join of the values set
into it (bool < int < float; int 0 until set), an `if`'s that of its branches, a staged
function's parameters those of its calls' arguments. Ints are 64-bit and wrap; everything else
is Python's: true division of ints rounded once, floor division and modulo, exact comparison
of an int with a float, shifts (a negative count is an error), `print` (a float as its repr)
and `printf` (str.format). Division by zero and recursion deeper than 20000 calls are errors
when the program runs.

What a program may not do (an unknown node, an unbound name, a value of the wrong type, a def
not at the top or not bound to its own name, a format Python rejects, an int that does not
fit in 64 bits) is a RefIRError: a compiler must reject it. Nodes outside the scalar IR
(tensors, loaders, strings as values) raise Unsupported: the reference has no opinion.
"""
import re

INT64_MIN, INT64_MAX = -2**63, 2**63 - 1
MAX_CALL_DEPTH = 20000
SCALARS = ("int", "float", "bool")
ARITHMETIC = {"+", "-", "*", "/", "//", "%"}
COMPARISON = {"==", "!=", "<", "<=", ">", ">="}
BITWISE = {"&", "|", "^", "<<", ">>"}
# Nodes of the IR that the reference does not model (tensors, data, training, strings).
UNMODELLED = {"tensor", "variable", "dot", "call", "array-get", "SGD", "transform", "loader",
              "len", "for_dataloader", "raise", "ones_like"}


class Sym(str):
    """A symbol (a plain str is a string literal)."""

    def __repr__(self):
        return f"Sym({str.__repr__(self)})"


class RefSyntaxError(Exception):
    """The text is not one IR form."""


class RefIRError(Exception):
    """A program the compiler must reject."""


class Unsupported(Exception):
    """Outside what the reference models."""


class Exhausted(Exception):
    """The run took more steps (or nested calls) than the reference's budget."""


class RefRuntimeError(Exception):
    """An error the compiled program must raise when it runs (its kind: zero-division,
    negative-shift, too-deep)."""

    def __init__(self, kind):
        super().__init__(kind)
        self.kind = kind


# ------------------------------------------------------------------ reading

_TOKEN = re.compile(r'\s+|(?P<open>\()|(?P<close>\))|(?P<string>"(?:[^"\\]|\\.)*")'
                    r'|(?P<atom>[^\s()"]+)', re.S)
_INT = re.compile(r"[-+]?[0-9]+\Z")
_FLOAT = re.compile(r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][-+]?[0-9]+)?\Z")
_SPECIAL = {"inf": float("inf"), "-inf": float("-inf"), "nan": float("nan"),
            "True": True, "False": False, "None": None}
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r"}


def atom(token):
    if _INT.match(token):
        return int(token)
    if _FLOAT.match(token):
        return float(token)
    if token in _SPECIAL:
        return _SPECIAL[token]
    return Sym(token)


def _unescape(body):
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
        elif body[i + 1] == "x":
            digits = body[i + 2:i + 4]
            if not re.fullmatch(r"[0-9a-fA-F]{2}", digits):
                raise RefSyntaxError(f"bad \\x escape {digits!r}")
            out.append(chr(int(digits, 16)))
            i += 4
        else:
            out.append(_ESCAPES.get(body[i + 1], "\\" + body[i + 1]))
            i += 2
    return "".join(out)


def read(text):
    """The one form of IR `text` (lists, Sym, str, int, float, bool, None)."""
    stack, pos = [[]], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise RefSyntaxError(f"unterminated string at {pos}")
        if m.group("open"):
            stack.append([])
        elif m.group("close"):
            if len(stack) == 1:
                raise RefSyntaxError(f"unmatched ) at {pos}")
            done = stack.pop()
            stack[-1].append(done)
        elif m.group("string"):
            stack[-1].append(_unescape(m.group("string")[1:-1]))
        elif m.group("atom"):
            stack[-1].append(atom(m.group("atom")))
        pos = m.end()
    if len(stack) > 1:
        raise RefSyntaxError("( never closed")
    if len(stack[0]) != 1:
        raise RefSyntaxError("not exactly one form")
    return stack[0][0]


# ------------------------------------------------------------------ kinds


def join(a, b):
    """The type of a value that is `a` on one path and `b` on another."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    if a in SCALARS and b in SCALARS:
        return "float" if "float" in (a, b) else "int"
    raise RefIRError(f"a value is {a} on one path and {b} on another")


def numeric(kind):
    return "int" if kind == "bool" else kind


def coerce(value, kind):
    """`value` as a value of static `kind`."""
    if kind == "float":
        return float(value)
    if kind == "int":
        return int(value)
    if kind == "bool":
        return bool(value)
    return value


def wrap(n):
    return (n - INT64_MIN) % 2**64 + INT64_MIN


def is_head(node, name):
    return isinstance(node, list) and len(node) > 0 and isinstance(node[0], Sym) and node[0] == name


class Entry:
    """What a name is bound to: what (value, cell, function), its kind, and while running its
    value (a number, a Cell, a Function); while typing a cell's value is its key."""

    def __init__(self, what, kind, value=None):
        self.what, self.kind, self.value = what, kind, value


class Scope:
    def __init__(self, parent=None):
        self.parent, self.table = parent, {}

    def child(self):
        return Scope(self)

    def bind(self, name, entry):
        self.table[name] = entry

    def find(self, name):
        scope = self
        while scope is not None:
            if name in scope.table:
                return scope.table[name]
            scope = scope.parent
        return None

    def lookup(self, name):
        entry = self.find(name)
        if entry is None:
            raise RefIRError(f"`{name}` is not bound")
        return entry


class Cell:
    def __init__(self, kind):
        self.kind, self.value = kind, coerce(0, kind)


class Function:
    def __init__(self, name, params, body):
        self.name, self.params, self.body = name, params, body


_DUMMY = {"int": 0, "float": 0.0, "bool": False}


def literal_entry(x):
    """The Entry of a literal atom (RefIRError for an int beyond 64 bits)."""
    if isinstance(x, list):
        raise RefIRError("a list where an atom belongs")
    if isinstance(x, bool):
        return Entry("value", "bool", x)
    if x is None:
        return Entry("value", "none")
    if isinstance(x, int):
        if not INT64_MIN <= x <= INT64_MAX:
            raise RefIRError(f"the integer {x} does not fit in 64 bits")
        return Entry("value", "int", x)
    if isinstance(x, float):
        return Entry("value", "float", x)
    raise Unsupported("a string used as a value")


def name_of(x):
    """A binding's name: a symbol (the reference has no opinion on anything else)."""
    if not isinstance(x, Sym):
        raise Unsupported(f"{x!r} where a name belongs")
    return str(x)


def lets(node):
    """The (name, value) pairs of a chain of lets, and the result after them."""
    out = []
    while is_head(node, "let"):
        if len(node) != 4:
            raise RefIRError("a let is (let NAME VALUE BODY)")
        out.append((node[1], node[2]))
        node = node[3]
    return out, node


def is_string(x):
    return isinstance(x, str) and not isinstance(x, Sym)


def is_new(x):
    return isinstance(x, Sym) and x == "new"


# ------------------------------------------------------------------ the evaluator


class Reference:
    """One program with the kinds of its parameters: checked and typed when made (RefIRError,
    Unsupported), then `run` on arguments, giving a Run."""

    MAX_PASSES = 20

    def __init__(self, program, arg_kinds):
        if not (isinstance(program, list) and len(program) == 4 and is_head(program, "def")
                and isinstance(program[2], list) and is_head(program[3], "begin")):
            raise RefIRError("a program is (def NAME (PARAMS) (begin ...))")
        self.program, self.arg_kinds = program, list(arg_kinds)
        self.params = [name_of(p) for p in program[2]]
        if len(self.params) != len(self.arg_kinds):
            raise RefIRError("wrong number of parameter types")
        self.functions = self.find_functions()
        # Kinds found by typing: of each cell (by its `new`), each staged function's
        # (params, result), and each arithmetic and `if` node.
        self.cell_kinds, self.function_kinds, self.node_kinds = {}, {}, {}
        for _ in range(self.MAX_PASSES):
            self.changed = False
            self.result_kind = self.type_block(program[3], self.parameters(), top=True)
            if not self.changed:
                break
        else:
            raise Unsupported("types did not settle")
        if self.result_kind not in (*SCALARS, "none"):
            raise RefIRError(f"the program's result is a {self.result_kind}")

    def parameters(self, values=None):
        scope = Scope()
        for i, (p, k) in enumerate(zip(self.params, self.arg_kinds)):
            scope.bind(p, Entry("value", k, None if values is None else coerce(values[i], k)))
        return scope

    def find_functions(self):
        """The staged functions: (let F (def F (PARAMS) BODY) ...) in the program's top chain."""
        chain = self.program[3]
        while is_head(chain, "begin") and len(chain) == 2:
            chain = chain[1]
        table = Scope()
        for name, rhs in lets(chain)[0]:
            if is_head(rhs, "def") and len(rhs) == 4 and isinstance(rhs[2], list):
                f = Function(name_of(rhs[1]), [name_of(p) for p in rhs[2]], rhs[3])
                if f.name != name_of(name):
                    raise RefIRError("a def must be bound to its own name")
                if table.find(f.name) is not None:
                    raise Unsupported("two staged functions of one name")
                table.bind(f.name, Entry("function", None, f))
        return table

    # ================================================================ typing

    def type_block(self, node, scope, top=False):
        if not (is_head(node, "begin") and len(node) == 2):
            raise RefIRError("expected (begin CHAIN)")
        scope = scope.child()
        pairs, result = lets(node[1])
        for name, rhs in pairs:
            scope.bind(name_of(name), self.type_rhs(rhs, scope, top))
        if is_head(result, "begin"):
            return self.type_block(result, scope, top and not pairs)
        return self.atom(result, scope).kind

    def atom(self, x, scope):
        return scope.lookup(str(x)) if isinstance(x, Sym) else literal_entry(x)

    def scalar_kind(self, x, scope):
        entry = self.atom(x, scope)
        if entry.what != "value" or entry.kind not in SCALARS:
            raise RefIRError(f"{x!r} is not a number")
        return entry.kind

    def update(self, table, key, value):
        if table.get(key) != value:
            table[key] = value
            self.changed = True

    def value(self, kind):
        return Entry("value", kind)

    def type_rhs(self, node, scope, top):
        if is_new(node):
            return Entry("cell", None, id(node))
        if not isinstance(node, list):
            return self.atom(node, scope)
        if not node or not isinstance(node[0], Sym):
            raise RefIRError("a node starts with its name")
        head, args = str(node[0]), node[1:]
        if head == "def" and len(args) == 3 and isinstance(args[1], list):
            return self.type_def(node, top)
        is_call = head == "call" and len(args) == 2 and isinstance(args[1], list)
        if is_call and isinstance(args[0], Sym):
            entry = scope.find(str(args[0]))
            if entry is not None and entry.what == "function":
                return self.value(self.type_call(entry.value, args[1], scope))
        if head == "set" and len(args) == 2:
            key = self.cell_key(args[0], scope)
            kind = join(self.cell_kinds.get(key), self.scalar_kind(args[1], scope))
            self.update(self.cell_kinds, key, kind)
            return self.value("none")
        if head == "get" and len(args) == 1:
            return self.value(self.cell_kinds.get(self.cell_key(args[0], scope)) or "int")
        if head in ARITHMETIC and len(args) == 2:
            kind = join(*(numeric(self.scalar_kind(x, scope)) for x in args))
            self.node_kinds[id(node)] = kind
            return self.value("float" if head == "/" else kind)
        if head in COMPARISON and len(args) == 2:
            for x in args:
                self.scalar_kind(x, scope)
            return self.value("bool")
        if (head in BITWISE and len(args) == 2) or (head == "~" and len(args) == 1):
            kinds = [self.scalar_kind(x, scope) for x in args]
            if "float" in kinds:
                raise RefIRError("bitwise operators take ints")
            # As Python's: & | ^ of two bools is a bool; anything else an int.
            both_bools = head in ("&", "|", "^") and kinds == ["bool", "bool"]
            self.node_kinds[id(node)] = "bool" if both_bools else "int"
            return self.value(self.node_kinds[id(node)])
        if head == "if" and len(args) == 3:
            self.scalar_kind(args[0], scope)
            kinds = [self.type_block(b, scope) for b in args[1:]]
            kind = "none" if "none" in kinds else join(*kinds)
            if kind not in (*SCALARS, "none"):
                raise RefIRError(f"an if whose value is a {kind}")
            self.node_kinds[id(node)] = kind
            return self.value(kind)
        if head == "while" and len(args) == 2:
            if self.type_block(args[0], scope) not in SCALARS:
                raise RefIRError("a while's test must be a number")
            self.type_block(args[1], scope)
            return self.value("none")
        if head == "print" and len(args) == 1:
            if not is_string(args[0]):
                self.scalar_kind(args[0], scope)
            return self.value("none")
        if head == "printf" and len(args) == 1 and isinstance(args[0], list) and args[0]:
            fmt, *values = args[0]
            if not is_string(fmt):
                raise RefIRError("printf's format must be a string")
            kinds = [self.scalar_kind(v, scope) for v in values]
            try:
                fmt.format(*(_DUMMY[k] for k in kinds))
            except (ValueError, IndexError, KeyError, TypeError, AttributeError) as e:
                raise RefIRError(f"format {fmt!r}: {e}") from None
            return self.value("none")
        if head in UNMODELLED:
            raise Unsupported(f"the node {head}")
        raise RefIRError(f"unknown or malformed node {head}")

    def cell_key(self, x, scope):
        entry = self.atom(x, scope)
        if entry.what != "cell":
            raise RefIRError(f"{x!r} is not a cell")
        return entry.value

    def kinds_of(self, f):
        return self.function_kinds.get(f.name, ([None] * len(f.params), None))

    def type_def(self, node, top):
        if not top:
            raise RefIRError("a def must be at the program's top level")
        entry = self.functions.lookup(name_of(node[1]))
        f = entry.value
        params, result = self.kinds_of(f)
        scope = self.functions.child()
        for p, k in zip(f.params, params):
            scope.bind(p, self.value(k or "bool"))
        kind = self.type_block(f.body, scope)
        if kind not in (*SCALARS, "none"):
            raise RefIRError(f"staged function {f.name} returns a {kind}")
        self.update(self.function_kinds, f.name, (params, join(result, kind)))
        return entry

    def type_call(self, f, args, scope):
        params, result = self.kinds_of(f)
        if len(args) != len(f.params):
            raise RefIRError(f"{f.name} takes {len(f.params)} arguments")
        # a parameter's kind is the join of its arguments' (a bool stays a bool, as in Python)
        seen = [join(old, self.scalar_kind(a, scope)) for a, old in zip(args, params)]
        self.update(self.function_kinds, f.name, (seen, result))
        # a result not known yet (a recursive call) starts as the narrowest kind, bool, as the
        # parameters do: taking it for an int made a function returning a bool return an int
        return result or "bool"

    # ================================================================ running

    def run(self, args, max_steps=200_000, max_depth=200):
        """The Run of the program on `args`; Exhausted past the reference's budgets."""
        self.output, self.steps, self.depth = [], 0, 0
        self.max_steps, self.max_depth = max_steps, max_depth
        run = Run()
        try:
            value = self.eval_block(self.program[3], self.parameters(args))
            run.value = None if self.result_kind == "none" else coerce(value, self.result_kind)
        except RefRuntimeError as e:
            run.error = e
        run.output = "".join(self.output).encode("utf-8")
        return run

    def step(self):
        self.steps += 1
        if self.steps > self.max_steps:
            raise Exhausted("steps")

    def eval_block(self, node, scope):
        scope = scope.child()
        pairs, result = lets(node[1])
        for name, rhs in pairs:
            self.step()
            scope.bind(str(name), self.eval_rhs(rhs, scope))
        if is_head(result, "begin"):
            return self.eval_block(result, scope)
        return self.atom(result, scope).value

    def number(self, x, scope):
        entry = self.atom(x, scope)
        return entry.kind, entry.value

    def eval_rhs(self, node, scope):
        if is_new(node):
            return Entry("cell", None, Cell(self.cell_kinds.get(id(node)) or "int"))
        if not isinstance(node, list):
            return self.atom(node, scope)
        head, args = str(node[0]), node[1:]
        if head == "def":
            return self.functions.lookup(str(node[1]))
        if head == "call":
            entry = scope.find(str(args[0])) if isinstance(args[0], Sym) else None
            if entry is not None and entry.what == "function":
                return self.eval_call(entry.value, args[1], scope)
        if head == "set":
            cell = self.atom(args[0], scope).value
            cell.value = coerce(self.atom(args[1], scope).value, cell.kind)
            return Entry("value", "none")
        if head == "get":
            cell = self.atom(args[0], scope).value
            return Entry("value", cell.kind, cell.value)
        if head in ARITHMETIC:
            return self.arithmetic(head, node, args, scope)
        if head in COMPARISON:
            a, b = (self.atom(x, scope).value for x in args)
            return Entry("value", "bool", {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b,
                                            ">": a > b, ">=": a >= b}[head])
        if head in BITWISE or head == "~":
            kind = self.node_kinds[id(node)]
            value = self.bitwise(head, [int(self.atom(x, scope).value) for x in args])
            return Entry("value", kind, coerce(value, kind))
        if head == "if":
            kind = self.node_kinds[id(node)]
            value = self.eval_block(args[1] if self.atom(args[0], scope).value else args[2], scope)
            return Entry("value", kind, None if kind == "none" else coerce(value, kind))
        if head == "while":
            while True:
                self.step()
                if not self.eval_block(args[0], scope):
                    break
                self.eval_block(args[1], scope)
            return Entry("value", "none")
        if head == "print":
            self.output.append(self.shown(args[0], scope) + "\n")
            return Entry("value", "none")
        if head == "printf":
            fmt, *values = args[0]
            try:
                text = fmt.format(*(self.atom(v, scope).value for v in values))
            except (ValueError, IndexError, KeyError, TypeError, OverflowError) as e:
                raise Unsupported(f"the format fails on these values: {e}") from None
            self.output.append(text + "\n")
            return Entry("value", "none")
        raise AssertionError(f"typing let {head} through")

    def shown(self, x, scope):
        if is_string(x):
            return x
        entry = self.atom(x, scope)
        return repr(entry.value) if entry.kind == "float" else str(entry.value)

    def arithmetic(self, op, node, args, scope):
        kind = self.node_kinds[id(node)]
        a, b = (coerce(self.atom(x, scope).value, kind) for x in args)
        try:
            if op == "/":
                return Entry("value", "float", a / b)
            r = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                 "//": lambda: a // b, "%": lambda: a % b}[op]()
        except ZeroDivisionError:
            raise RefRuntimeError("zero-division") from None
        return Entry("value", kind, wrap(r) if kind == "int" else r)

    @staticmethod
    def bitwise(op, values):
        if op == "~":
            return ~values[0]
        a, b = values
        if op in ("<<", ">>") and b < 0:
            raise RefRuntimeError("negative-shift")
        if op == "<<":
            return 0 if b >= 64 else wrap(a << b)
        if op == ">>":
            return a >> min(b, 64)
        return {"&": a & b, "|": a | b, "^": a ^ b}[op]

    def eval_call(self, f, args, scope):
        params, result = self.kinds_of(f)
        values = [coerce(self.atom(a, scope).value, k or "bool") for a, k in zip(args, params)]
        self.depth += 1
        try:
            if self.depth > MAX_CALL_DEPTH:
                raise RefRuntimeError("too-deep")
            if self.depth > self.max_depth:
                raise Exhausted("calls nested deeper than the reference follows")
            body = self.functions.child()
            for p, k, v in zip(f.params, params, values):
                body.bind(p, Entry("value", k or "bool", v))
            value = self.eval_block(f.body, body)
        finally:
            self.depth -= 1
        kind = result or "int"
        return Entry("value", kind, None if kind == "none" else coerce(value, kind))


class Run:
    """What running a program did: value, printed bytes, error (a RefRuntimeError or None)."""

    def __init__(self):
        self.value, self.output, self.error = None, b"", None

    def __repr__(self):
        return f"Run(value={self.value!r}, output={self.output!r}, error={self.error!r})"
