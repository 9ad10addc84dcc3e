"""Random `defstaged` programs for differential fuzzing (tests/test_fuzz_staging.py).

A program is a tree of `Form`, `Lit`, `Name` and `Text`, drawn by hypothesis strategies that
stay inside what README's "What stages" says is staged: ints, floats and bools, arithmetic,
comparisons, `and`/`or`/`not`, bitwise operators, nested `if`/`when`/`cond`/`while`/`for`/
`let` (loops bounded by a counter compared with a constant), variables assigned under staged
control flow, calls of other defstaged functions (inlined, or recursing at run time), `print`
and `.format`. Every variable keeps one type, as static typing requires.

The tree renders twice: the `defstaged` functions under test, and their eager twins (plain
`defn`s) in which int constants and bool operands of int arithmetic are `CheckedInt`s, so a
Python run whose ints leave the 64 bits that compiled code wraps in raises `OutOfInt64` and
that argument set is skipped rather than compared.

    case = cases().example()
    print(case.source)      # (require hytorch [defstaged]) (defstaged fuzzed [v0 v1] ...)
"""
import contextlib
import dataclasses
import itertools
import math
import time
from dataclasses import dataclass, field

from hypothesis import strategies as st

# Bitwise operators on ints (& | ^ << >> bnot): on since `hytorch.stage` of `(& n 3)` works.
BITWISE_OPS = True

INT64_MIN, INT64_MAX = -2**63, 2**63 - 1
FUNCTION = "fuzzed"
CHECK = "_fuzz_ck"  # the eager twin's CheckedInt constructor

# ------------------------------------------------------------------ forms


@dataclass(frozen=True)
class Lit:
    value: object

    @property
    def kind(self):
        v = self.value
        return "bool" if isinstance(v, bool) else "int" if isinstance(v, int) else \
            "float" if isinstance(v, float) else None


@dataclass(frozen=True)
class Name:
    name: str
    kind: str = None        # a variable's type, where it is read as an expression


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class FunctionName:
    """A generated function's name: the eager twin calls the twins of the others."""
    name: str


@dataclass(frozen=True)
class Form:
    """`(items...)`. `checked`: indices of operands the eager twin wraps in CheckedInt (bools in
    int arithmetic). `head`: how many items stay on the first line; the rest are indented
    lines, the statements of a block (None: all on one line). `kind`: an expression's type.
    `keep`: a statement the shrinker must keep (a loop counter's step)."""
    items: tuple
    checked: frozenset = frozenset()
    head: object = None
    square: bool = False
    kind: str = None
    keep: bool = False


def form(*items, checked=(), head=None):
    return Form(tuple(items), frozenset(checked), head)


def brackets(*items):
    """`[items...]`: a parameter list or the bindings of `let` and `for`."""
    return Form(tuple(items), square=True)


def hy_string(text):
    """A Hy string literal for `text`: (hy_string 'a"\\n') => '"a\\"\\n"'"""
    escapes = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}

    def escaped(c):
        return escapes.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 32 or ord(c) == 127 else c)
    return '"' + "".join(map(escaped, text)) + '"'


def float_literal(x):
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    return repr(x)


def render(x, eager=False, indent=0):
    """Hy source of a form; `eager` renders the CheckedInt twin."""
    if isinstance(x, Lit):
        v = x.value
        if isinstance(v, bool):
            return "True" if v else "False"
        if isinstance(v, int):
            return f"({CHECK} {v})" if eager else str(v)
        return float_literal(v)
    if isinstance(x, Name):
        return x.name
    if isinstance(x, FunctionName):
        return f"{x.name}_eager" if eager else x.name
    if isinstance(x, Text):
        return hy_string(x.text)
    parts = [render(item, eager, indent + 2) for item in x.items]
    if eager:
        parts = [f"({CHECK} {p})" if i in x.checked else p for i, p in enumerate(parts)]
    open_, close = "[]" if x.square else "()"
    if x.head is None or len(parts) <= x.head:
        return open_ + " ".join(parts) + close
    pad = "\n" + " " * (indent + 2)
    return open_ + " ".join(parts[:x.head]) + pad + pad.join(parts[x.head:]) + close


# ------------------------------------------------------------------ values


class OutOfInt64(Exception):
    """An eager int left the 64 bits (compiled code wraps there, as documented)."""


def _checked(value):
    if isinstance(value, int) and not isinstance(value, bool):
        if not INT64_MIN <= value <= INT64_MAX:
            raise OutOfInt64(value)
        return CheckedInt(value)
    return value


class CheckedInt(int):
    """An int that raises OutOfInt64 when arithmetic takes it out of int64."""

    def __new__(cls, value=0):
        return super().__new__(cls, value)


def _checked_method(name):
    base = getattr(int, name)

    def method(self, *args):
        return _checked(base(self, *args))
    method.__name__ = name
    return method


for _name in ("__add__ __radd__ __sub__ __rsub__ __mul__ __rmul__ __floordiv__ __rfloordiv__ "
              "__mod__ __rmod__ __pow__ __rpow__ __neg__ __pos__ __abs__ __and__ __rand__ "
              "__or__ __ror__ __xor__ __rxor__ __lshift__ __rlshift__ __rshift__ __rrshift__ "
              "__invert__").split():
    setattr(CheckedInt, _name, _checked_method(_name))


INT_EDGES = [0, 1, -1, 2, 3, -7, 63, 64, 255, 2**31 - 1, -2**31, 2**32, 2**53, 2**53 + 1,
             -(2**53) - 1, 10**18, 2**62, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1]
FLOAT_EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, 2.5, -7.25, 0.1, 1e16, 2.0**53, 123.456, 1e308,
               -1e308, 5e-324, 1e-300, 2.0**-24, math.inf, -math.inf, math.nan]


def int_values():
    return st.one_of(st.integers(-100, 100), st.sampled_from(INT_EDGES),
                     st.integers(INT64_MIN, INT64_MAX))


def float_values():
    return st.one_of(st.sampled_from(FLOAT_EDGES), st.floats(-100, 100),
                     st.floats(allow_nan=True, allow_infinity=True))


VALUES = {"int": int_values, "float": float_values, "bool": st.booleans}
TYPES = {"int": int, "float": float, "bool": bool}
KINDS = ("int", "float", "bool")

# ------------------------------------------------------------------ text

# Pieces that C string literals, printf and the IR's quoting must pass through unchanged.
TRICKY_TEXT = ["?", "??/", "??=", "??(", "??'", "\\", '"', "%", "%d", "%s", "%%", "{", "}",
               "\0", "\n", "\t", "\r", "\x1b", "\x7f", "é", "λ", "😀", "\u200b", "\\n", "\\x41",
               "*/", "/*", " ", "a", "Z", "0", "(", ")", "'"]


def texts(max_pieces=5):
    return st.lists(st.one_of(st.sampled_from(TRICKY_TEXT),
                              st.text(st.characters(exclude_categories=["Cs"]), max_size=3)),
                    max_size=max_pieces).map("".join)


# Names Hy reads as symbols that could collide with what the IR or the C backend uses.
TRICKY_NAMES = ["x0", "x1", "in", "in1", "ht_s", "ht_result", "int", "double", "NULL", "main",
                "return", "result", "arena_mark", "é", "λ", "a-b", "nan", "None_", "if_", "*x*"]
# ... and the names defstaged's rewrite gives its own variables (drawn more rarely).
REWRITE_NAMES = ["_hyt", "_hyt_frame_0", "_hyt_item", "_hyt_values", "_hyt_return"]

# ------------------------------------------------------------------ format specs

FLOAT_TYPES = ["f", "F", "e", "E", "g", "G", "%"]


@st.composite
def supported_specs(draw, kind):
    """A spec printf.hy's grammar supports for an argument of `kind`."""
    if kind == "float" and draw(st.booleans()):
        return ""
    types = FLOAT_TYPES if kind == "float" else ["", "d", *FLOAT_TYPES]
    type_ = draw(st.sampled_from(types))
    align = draw(st.sampled_from(["", "<", ">", " <", " >"]))
    if type_ == "%" and align.endswith("<"):
        align = ">"
    sign = draw(st.sampled_from(["", "+", "-", " "]))
    zero = draw(st.sampled_from(["", "0"]))
    width = draw(st.sampled_from(["", *map(str, range(1, 26))]))
    precisions = ["", *(f".{p}" for p in range(21))] if type_ not in ("", "d") else [""]
    precision = draw(st.sampled_from(precisions))
    return align + sign + zero + width + precision + type_


def unsupported_specs(kind):
    """Specs Python accepts that staged code documents as unsupported (printf.hy)."""
    common = ["*<5", "^7", "=+8", "0>6", "#", ",", "_", "x<4"]
    by_kind = {"float": ["10", ".3", "n", "<8.2%", "+,.2f", "#.3g"],
               "int": ["x", "X", "o", "b", "n", "#x", ",d", "_d"],
               "bool": ["x", "o", "#b"]}
    return st.sampled_from(common[:5] + by_kind[kind])


def invalid_specs(kind):
    """Specs Python's format rejects with a ValueError."""
    by_kind = {"float": ["d", "s", "q", "5.5.5", "<<", ".f3", "c"],
               "int": [".3d", "s", "q", "5.5.5", "<<", ".2"],
               "bool": [".3d", "s", "q", "<<"]}
    return st.sampled_from(by_kind[kind])


def _valid_for_strings(spec):
    try:
        format("text", spec)
        return True
    except ValueError:
        return False


@st.composite
def field_specs(draw, kind):
    """(spec, conversion, label): label is 'supported', 'unsupported' or 'invalid'."""
    roll = draw(st.integers(0, 99))
    conversion = ""
    if roll < 84:
        spec, label = draw(supported_specs(kind)), "supported"
        if draw(st.integers(0, 19)) == 0:
            # A conversion makes a string: with a spec, staged code refuses it (printf.hy)
            # and Python formats the string, or rejects the spec as one for numbers.
            conversion = draw(st.sampled_from(["!r", "!s"]))
            if spec:
                label = "unsupported" if _valid_for_strings(spec) else "invalid"
    elif roll < 92:
        spec, label = draw(unsupported_specs(kind)), "unsupported"
        if roll == 91:
            spec, conversion = "", "!a"
    else:
        spec, label = draw(invalid_specs(kind)), "invalid"
        if roll == 99:
            spec, conversion = "", "!x"
    return spec, conversion, label


# ------------------------------------------------------------------ programs


@dataclass
class Definition:
    """One generated function: `(defstaged NAME [PARAMS] BODY...)`."""
    name: str
    params: list            # [(name, kind)]
    body: list              # forms

    def render(self, eager=False):
        params = brackets(*(Name(n) for n, _ in self.params))
        return render(form(Name("defn" if eager else "defstaged"), FunctionName(self.name), params,
                           *self.body, head=3), eager)


@dataclass
class Case:
    """A generated program (helpers, then the function under test, FUNCTION) and the
    argument sets to call it with."""
    definitions: list       # [Definition], FUNCTION's last
    labels: set = field(default_factory=set)   # format-spec labels used
    argsets: list = field(default_factory=list)

    @property
    def params(self):
        return self.definitions[-1].params

    @property
    def types(self):
        return [TYPES[k] for _, k in self.params]

    @property
    def source(self):
        """The module under test, as a user would write it."""
        functions = "\n\n".join(d.render() for d in self.definitions)
        return f"(require hytorch [defstaged])\n\n{functions}\n"

    @property
    def module_source(self):
        """The module imported: the program and its eager twin (`NAME_eager` functions)."""
        return (f"{self.source}\n;; eager twin: int constants as CheckedInt\n"
                + "\n\n".join(d.render(eager=True) for d in self.definitions) + "\n")

    def __repr__(self):
        return f"Case(\n{self.source}args: {self.argsets!r})"

    def _repr_pretty_(self, printer, cycle):  # how hypothesis shows a falsifying example
        printer.text(repr(self))

    def describe(self):
        types = ", ".join(k for _, k in self.params)
        return f"program (`{FUNCTION}` staged with {types or 'no parameters'}):\n{self.source}"


class Scope:
    """Variables visible in a block: name -> (kind, assignable)."""

    def __init__(self, parent=None):
        self.parent, self.table = parent, {}

    def lookup(self, name):
        scope = self
        while scope is not None:
            if name in scope.table:
                return scope.table[name]
            scope = scope.parent
        return None

    def visible(self):
        names = {}
        chain = []
        scope = self
        while scope is not None:
            chain.append(scope)
            scope = scope.parent
        for s in reversed(chain):
            names.update(s.table)
        return names


MAX_STATEMENTS = 12
MAX_NESTING = 3


class Generator:
    """Draws one program. Each method returns forms (expressions come with their kind)."""

    def __init__(self, draw, bitwise):
        self.draw = draw
        self.bitwise = bitwise
        self.scope = Scope()
        self.used = set()
        self.numbers = itertools.count()
        self.statements_left = draw(st.integers(1, MAX_STATEMENTS))
        self.labels = set()
        self.params = []
        self.functions = []     # [(name, param kinds, result kind)] callable from here
        self.definitions = []

    # ---- names and scopes
    def fresh(self):
        draw = self.draw
        roll = draw(st.integers(0, 299))
        if roll < 30:
            name = draw(st.sampled_from(REWRITE_NAMES if roll == 0 else TRICKY_NAMES))
            if name not in self.used:
                self.used.add(name)
                return name
        while True:
            name = f"v{next(self.numbers)}"
            if name not in self.used:
                self.used.add(name)
                return name

    def bind(self, name, kind, assignable=True):
        self.scope.table[name] = (kind, assignable)

    @contextlib.contextmanager
    def block_scope(self):
        self.scope = Scope(self.scope)
        try:
            yield
        finally:
            self.scope = self.scope.parent

    def variables(self, kind=None, assignable=False):
        return sorted(n for n, (k, a) in self.scope.visible().items()
                      if (kind is None or k == kind) and (a or not assignable))

    # ---- expressions
    def literal(self, kind):
        return Lit(self.draw(st.one_of(st.integers(-10, 10), st.sampled_from(INT_EDGES),
                                       st.integers(-2**31, 2**31)) if kind == "int"
                             else st.one_of(st.sampled_from(FLOAT_EDGES),
                                            st.floats(allow_nan=False)) if kind == "float"
                             else st.booleans()))

    def leaf(self, kind):
        names = self.variables(kind)
        if names and self.draw(st.integers(0, 9)) < 7:
            return Name(self.draw(st.sampled_from(names)), kind)
        return self.literal(kind)

    def any_kind(self):
        return self.draw(st.sampled_from(KINDS))

    def expr(self, kind, depth):
        """An expression of `kind`, at most `depth` operators deep."""
        made = self.untyped_expr(kind, depth)
        return dataclasses.replace(made, kind=kind) if isinstance(made, Form) else made

    def untyped_expr(self, kind, depth):
        if depth <= 0 or self.draw(st.integers(0, 3)) == 0:
            return self.leaf(kind)
        if self.functions and self.draw(st.integers(0, 5)) == 0:
            call = self.call(kind, depth - 1)
            if call is not None:
                return call
        productions = {"int": self.int_expr, "float": self.float_expr, "bool": self.bool_expr}
        return productions[kind](depth - 1)

    def pick(self, options):
        return self.draw(st.sampled_from(options))

    def int_operand(self, depth):
        """(expression, kind) of an operand of int arithmetic: an int, now and then a bool."""
        kind = "bool" if self.draw(st.integers(0, 6)) == 0 else "int"
        return self.expr(kind, depth), kind

    def int_arith(self, op, *operands):
        """(op a b ...) of int result: bool operands are checked ints in the eager twin."""
        return form(Name(op), *(e for e, _ in operands),
                    checked=[i + 1 for i, (_, k) in enumerate(operands) if k == "bool"])

    def either(self, kind, depth):
        """(if c a b), (and a b) or (or a b) of two expressions of `kind`."""
        op = self.pick(["if", "and", "or"])
        tests = [self.expr("bool", depth)] if op == "if" else []
        return form(Name(op), *tests, self.expr(kind, depth), self.expr(kind, depth))

    def shift_count(self, depth):
        """A count from -3 to 70 (Python shifting by a huge count would need huge memory)."""
        if self.draw(st.booleans()):
            return Lit(self.draw(st.integers(-3, 70)))
        any_int = self.expr("int", min(depth, 1))
        return form(Name("-"), form(Name("%"), any_int, Lit(74)), Lit(3))

    def int_expr(self, depth):
        choices = ["+-*", "//%", "**", "abs", "neg", "either"]
        if self.bitwise:
            choices += ["bitwise", "shift", "bnot"]
        choice = self.pick(choices)
        operand = lambda: self.int_operand(depth)          # noqa: E731
        if choice in ("+-*", "//%", "bitwise"):
            ops = {"+-*": ["+", "-", "*"], "//%": ["//", "%"], "bitwise": ["&", "|", "^"]}[choice]
            first = (self.expr("int", depth), "int") if choice == "bitwise" else operand()
            return self.int_arith(self.pick(ops), first, operand())
        if choice == "**":
            return self.int_arith("**", operand(), (Lit(self.draw(st.integers(1, 4))), "int"))
        if choice in ("abs", "neg", "bnot"):
            return self.int_arith({"neg": "-"}.get(choice, choice), operand())
        if choice == "shift":
            return self.int_arith(self.pick(["<<", ">>"]), (self.expr("int", depth), "int"),
                                  (self.shift_count(depth), "int"))
        return self.either("int", depth)

    def float_expr(self, depth):
        choice = self.pick(["+-*", "/", "//%", "**", "abs", "neg", "either"])
        any_number = lambda: self.expr(self.any_kind(), depth)      # noqa: E731
        if choice in ("+-*", "//%"):
            operands = [self.expr("float", depth), any_number()]
            if self.draw(st.booleans()):
                operands.reverse()
            ops = ["+", "-", "*"] if choice == "+-*" else ["//", "%"]
            return form(Name(self.pick(ops)), *operands)
        if choice == "/":
            return form(Name("/"), any_number(), any_number())
        if choice == "**":
            return form(Name("**"), self.expr("float", depth), Lit(self.draw(st.integers(1, 4))))
        if choice in ("abs", "neg"):
            return form(Name("abs" if choice == "abs" else "-"), self.expr("float", depth))
        return self.either("float", depth)

    def bool_expr(self, depth):
        choice = self.pick(["compare", "chain", "not", "either"])
        any_number = lambda: self.expr(self.any_kind(), depth)      # noqa: E731
        if choice in ("compare", "chain"):
            count = 2 if choice == "compare" else 3
            return form(Name(self.pick(["<", "<=", ">", ">=", "=", "!="])),
                        *(any_number() for _ in range(count)))
        if choice == "not":
            return form(Name("not"), any_number())
        return self.either("bool", depth)

    # ---- printing
    def format_call(self, depth):
        draw = self.draw
        kinds = [self.any_kind() for _ in range(draw(st.integers(0, 3)))]
        args = [self.expr(k, depth) for k in kinds]
        mode = draw(st.sampled_from(["auto", "auto", "manual", "mixed"]))
        fields = len(kinds) + (1 if draw(st.integers(0, 19)) == 0 else 0)
        if fields > len(kinds):
            self.labels.add("invalid")
        if mode == "mixed" and fields >= 2:
            self.labels.add("invalid")
        template = []
        for i in range(fields):
            template.append(self.template_text())
            index = i if mode == "auto" else draw(st.integers(0, max(len(kinds) - 1, 0)))
            if mode == "mixed":
                shown = "" if i % 2 == 0 else str(index)
            else:
                shown = "" if mode == "auto" else str(index)
            kind = kinds[index] if index < len(kinds) else "int"
            spec, conversion, label = draw(field_specs(kind))
            self.labels.add(label)
            template.append("{" + shown + conversion + (":" + spec if spec else "") + "}")
        template.append(self.template_text())
        if draw(st.integers(0, 29)) == 0:
            template.append("{")      # a lone brace: Python's format rejects it
            self.labels.add("invalid")
        return form(Name(".format"), Text("".join(template)), *args)

    def template_text(self):
        return self.draw(texts(3)).replace("{", "{{").replace("}", "}}")

    def print_stmt(self, depth):
        draw = self.draw
        items = []
        for _ in range(draw(st.integers(0, 3))):
            what = draw(st.sampled_from(["text", "expr", "format"]))
            if what == "text":
                items.append(Text(draw(texts())))
            elif what == "expr":
                items.append(self.expr(self.any_kind(), depth))
            else:
                items.append(self.format_call(depth))
        return form(Name("print"), *items)

    # ---- statements
    def statements(self, nesting):
        """A block's statements (at least one)."""
        out = []
        for _ in range(self.draw(st.integers(1, 4))):
            out.extend(self.statement(nesting))
            if self.statements_left <= 0:
                break
        return out

    def statement(self, nesting):
        draw = self.draw
        self.statements_left -= 1
        simple = ["setv", "print", "assign", "augment"]
        nested = ["if", "when", "cond", "while", "for", "let"]
        choices = simple + (nested if nesting < MAX_NESTING and self.statements_left > 0 else [])
        choice = draw(st.sampled_from(choices))
        depth = draw(st.integers(0, 3))
        if choice in ("assign", "augment") and not self.variables(assignable=True):
            choice = "setv"
        if choice == "setv":
            kind = self.any_kind()
            value = self.expr(kind, depth)
            name = self.fresh()
            self.bind(name, kind)
            return [form(Name("setv"), Name(name), value)]
        if choice == "print":
            return [self.print_stmt(depth)]
        if choice == "assign":
            name = draw(st.sampled_from(self.variables(assignable=True)))
            return [form(Name("setv"), Name(name), self.expr(self.scope.lookup(name)[0], depth))]
        if choice == "augment":
            name = draw(st.sampled_from(self.variables(assignable=True)))
            kind = self.scope.lookup(name)[0]
            if kind == "bool":
                return [form(Name("setv"), Name(name), self.expr("bool", depth))]
            op = draw(st.sampled_from(["+=", "-=", "*="]))
            if kind == "int":
                value, value_kind = self.int_operand(depth)
                return [self.int_arith(op, (Name(name), "int"), (value, value_kind))]
            return [form(Name(op), Name(name), self.expr(self.any_kind(), depth))]
        return getattr(self, f"{choice}_stmt")(nesting + 1, depth)

    def body(self, nesting):
        with self.block_scope():
            return self.statements(nesting)

    def do(self, statements):
        return statements[0] if len(statements) == 1 else form(Name("do"), *statements, head=1)

    def if_stmt(self, nesting, depth):
        test = self.expr("bool", depth)
        then, else_ = self.do(self.body(nesting)), self.do(self.body(nesting))
        return [form(Name("if"), test, then, else_, head=2)]

    def when_stmt(self, nesting, depth):
        return [form(Name("when"), self.expr("bool", depth), *self.body(nesting), head=2)]

    def cond_stmt(self, nesting, depth):
        items = []
        for _ in range(self.draw(st.integers(1, 3))):
            items += [self.expr("bool", depth), self.do(self.body(nesting))]
        if self.draw(st.booleans()):
            items += [Lit(True), self.do(self.body(nesting))]
        return [form(Name("cond"), *items, head=1)]

    def bound(self, depth):
        """An int the loop's trip count is compared with (often a staged parameter)."""
        ints = [n for n, k in self.params if self.scope.lookup(n) == (k, True) and k == "int"]
        if ints and self.draw(st.booleans()):
            return Name(self.draw(st.sampled_from(ints)), "int")
        return self.expr("int", min(depth, 1))

    def while_stmt(self, nesting, depth):
        draw = self.draw
        counter = self.fresh()
        limit = Lit(draw(st.integers(0, 4)))
        tests = [form(Name("<"), Name(counter), limit),
                 form(Name("<"), Name(counter), self.bound(depth))]
        if draw(st.booleans()):
            tests.append(self.expr("bool", min(depth, 2)))
        self.bind(counter, "int", assignable=False)
        with self.block_scope():
            increment = form(Name("+"), Name(counter), Lit(1))
            step = dataclasses.replace(form(Name("setv"), Name(counter), increment), keep=True)
            body = [step, *self.statements(nesting)]
        return [form(Name("setv"), Name(counter), Lit(0)),
                form(Name("while"), form(Name("and"), *tests), *body, head=2)]

    def for_stmt(self, nesting, depth):
        draw = self.draw
        limit = Lit(draw(st.integers(0, 4)))
        bound = self.bound(depth)
        stop = (limit if draw(st.integers(0, 3)) == 0
                else form(Name("if"), form(Name("<"), bound, limit), bound, limit))
        name = self.fresh()
        with self.block_scope():
            self.bind(name, "int", assignable=False)
            body = self.statements(nesting)
        return [form(Name("for"), brackets(Name(name), form(Name("range"), stop)), *body, head=2)]

    def let_stmt(self, nesting, depth):
        draw = self.draw
        kind = self.any_kind()
        value = self.expr(kind, depth)
        shadowable = self.variables()
        name = (draw(st.sampled_from(shadowable)) if shadowable and draw(st.booleans())
                else self.fresh())
        with self.block_scope():
            self.bind(name, kind)
            body = self.statements(nesting)
        return [form(Name("let"), brackets(Name(name), value), *body, head=2)]

    def result(self):
        if self.draw(st.integers(0, 4)) == 0:
            return []
        return [self.expr(self.any_kind(), self.draw(st.integers(0, 3)))]

    def call(self, kind, depth):
        """A call of a generated function whose result is of `kind`, or None."""
        matching = [f for f in self.functions if f[2] == kind]
        if not matching:
            return None
        name, kinds, _ = self.draw(st.sampled_from(matching))
        return form(FunctionName(name), *(self.bounded_argument(k, depth) for k in kinds))

    def bounded_argument(self, kind, depth):
        """An argument; an int is clamped to [.., 12], as it may count recursion steps."""
        value = self.expr(kind, depth)
        if kind != "int":
            return value
        return form(Name("if"), form(Name("<"), value, Lit(12)), value, Lit(12))

    def helper(self):
        """A defstaged helper that the function under test can call: an ordinary one
        (inlined) or one recursing on an int until it is <= 0 (a staged function)."""
        draw = self.draw
        name = f"helper{len(self.definitions)}"
        sub = Generator(draw, self.bitwise)
        sub.used, sub.labels, sub.functions = self.used, self.labels, list(self.functions)
        kind = self.any_kind()
        if draw(st.booleans()):
            sub.program(params=draw(st.integers(1, 2)), result_kind=kind)
            body = sub.body
        else:
            counter, acc = sub.fresh(), sub.fresh()
            sub.params = [(counter, "int"), (acc, kind)]
            for p, k in sub.params:
                sub.bind(p, k)
            sub.statements_left = 2
            step = sub.expr(kind, 2)
            recurse = form(FunctionName(name), form(Name("-"), Name(counter), Lit(1)), step)
            done = form(Name("<="), Name(counter), Lit(0))
            body = [form(Name("if"), done, Name(acc), recurse, head=2)]
        self.definitions.append(Definition(name, sub.params, body))
        self.functions.append((name, [k for _, k in sub.params], kind))

    def program(self, params=None, result_kind=None):
        """Parameters, then statements, then the result (`result_kind`, or any kind or none)."""
        draw = self.draw
        for _ in range(params or draw(st.integers(1, 3))):
            name, kind = self.fresh(), self.any_kind()
            self.params.append((name, kind))
            self.bind(name, kind)
        body = self.statements(0) if draw(st.integers(0, 5)) else []
        if result_kind is not None:
            result = [self.expr(result_kind, draw(st.integers(0, 3)))]
        else:
            result = self.result()
        self.body = body + result


@st.composite
def cases(draw, bitwise=None, argsets=3):
    """A Case: a random program and `argsets` argument lists for it."""
    gen = Generator(draw, BITWISE_OPS if bitwise is None else bitwise)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2]))):
        gen.helper()
    gen.program()
    case = Case([*gen.definitions, Definition(FUNCTION, gen.params, gen.body)], gen.labels)
    case.argsets = [[draw(VALUES[k]()) for _, k in gen.params] for _ in range(argsets)]
    return case


# ------------------------------------------------------------------ shrinking
#
# Hypothesis shrinks a failing case by its choices, which for these programs is slow (each
# candidate is compiled); `shrink_case` then cuts the program itself: statements dropped,
# blocks opened, expressions replaced by an operand or a literal of the same type.

_LITERALS = {"int": [0, 1], "float": [0.0, 1.0], "bool": [False, True]}


def _replace_at(node, path, new_items):
    """`node` with the item at `path` replaced by `new_items` (spliced in; [] removes it)."""
    i = path[0]
    if len(path) > 1:
        new_items = [_replace_at(node.items[i], path[1:], new_items)]
    return dataclasses.replace(node, items=node.items[:i] + tuple(new_items) + node.items[i + 1:])


def _walk(node, path=()):
    yield path, node
    if isinstance(node, Form):
        for i, item in enumerate(node.items):
            yield from _walk(item, path + (i,))


def _statements_of(block):
    """The statements a block would leave if opened in place."""
    if isinstance(block, Form) and block.items and block.items[0] == Name("do"):
        return list(block.items[1:])
    return [block]


def _head_name(node):
    if isinstance(node, Form) and node.items and isinstance(node.items[0], Name):
        return node.items[0].name
    return None


_BODY_START = {"when": 2, "while": 2, "for": 2, "let": 2, "do": 1}


def _candidates(root):
    """(path, replacement items) edits of a block of statements, bigger cuts first."""
    for path, node in _walk(root):
        if not path:
            continue
        parent = root
        for i in path[:-1]:
            parent = parent.items[i]
        removable = (parent.head is not None and path[-1] >= parent.head
                     and _head_name(parent) not in ("if", "cond")
                     and not getattr(node, "keep", False))
        if removable:
            yield path, []
        name = _head_name(node) if isinstance(node, Form) and node.head is not None else None
        if name == "cond":
            pairs = len(node.items) // 2
            for k in range(pairs):
                if pairs > 1:
                    items = node.items[:1 + 2 * k] + node.items[3 + 2 * k:]
                    yield path, [dataclasses.replace(node, items=items)]
                yield path, _statements_of(node.items[2 + 2 * k])
        elif name == "if":
            yield path, _statements_of(node.items[2])
            yield path, _statements_of(node.items[3])
        elif name in _BODY_START:
            yield path, list(node.items[_BODY_START[name]:])
        kind = getattr(node, "kind", None)
        if kind and isinstance(node, Form):
            for child in node.items:
                if getattr(child, "kind", None) == kind:
                    yield path, [child]
        if kind and not (isinstance(node, Lit) and node.value in _LITERALS[kind]):
            for value in _LITERALS[kind]:
                yield path, [Lit(value)]
        if isinstance(node, Text) and node.text:
            yield path, [Text("")]


def _smaller_cases(case):
    definitions = case.definitions
    for i in range(len(definitions) - 1):      # a helper that is not needed
        yield dataclasses.replace(case, definitions=definitions[:i] + definitions[i + 1:])
    for i in reversed(range(len(definitions))):
        root = form(Name("body"), *definitions[i].body, head=1)
        for path, items in _candidates(root):
            body = list(_replace_at(root, path, items).items[1:])
            changed = dataclasses.replace(definitions[i], body=body)
            others = definitions[:i], definitions[i + 1:]
            yield dataclasses.replace(case, definitions=[*others[0], changed, *others[1]])


def shrink_case(case, signature_of, budget_seconds=180):
    """A smaller Case whose failure `signature_of(case)` is the same: one argument set, then
    greedy cuts until none keeps the failure or the budget is spent."""
    target = signature_of(case)
    deadline = time.monotonic() + budget_seconds

    def fails(candidate):
        return time.monotonic() < deadline and signature_of(candidate) == target

    for args in case.argsets if len(case.argsets) > 1 else []:
        single = dataclasses.replace(case, argsets=[args])
        if fails(single):
            case = single
            break
    improved = True
    while improved:
        improved = False
        for candidate in _smaller_cases(case):
            if fails(candidate):
                case, improved = candidate, True
                break
    return case
