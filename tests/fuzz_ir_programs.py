"""Random scalar IR programs, and mutations of their text, for fuzzing `hytorch.compile_ir`
against tests/ir_reference.py (tests/test_fuzz_ir.py).

A program is a `(def NAME (PARAMS) (begin (begin CHAIN)))` drawn with random symbol names
(anything the reader reads as a symbol: `int`, `return`, `NULL`, `x2_1`, `a-b`, `ht_s`,
unicode), shadowing, staged functions, cells, bounded `while` loops, `if`, `print` and
`printf`. A mutated case edits its tokens (deletes, duplicates, swaps, flips parentheses,
puts in huge ints, odd strings, unknown nodes).

    case = ir_cases().example()
    print(case.text)         # (def f (in) (begin (begin (let x0 ...))))
"""
import math
import re
from dataclasses import dataclass, field

from hypothesis import strategies as st

from fuzz_programs import INT_EDGES, TYPES, TRICKY_TEXT, VALUES, supported_specs
from ir_reference import Sym, atom

# Names that mean something to C, the runtime, the backend or the reader's neighbours.
TRICKY_SYMBOLS = ["int", "return", "NULL", "x2_1", "x2", "x0", "a-b", "a_b", "a.b", "ht_s",
                  "ht_result", "ht_body", "ht_run", "ht_state", "in", "in1", "main", "printf",
                  "double", "int64_t", "INFINITY", "NAN", "HT_OK", "if", "while", "print", "let",
                  "begin", "set", "get", "def", "call", "for", "static", "const", "void",
                  "errno", "v0", "v_x0", "fn_f", "_", "__", "é", "λ", "名前", "ß", "x-1",
                  "+", "-", "*", "<", "==", "?", "??/", "a??=b", "%d", "{}", "\\", "x\\n",
                  "arena_mark", "ht_s_1", "v", "v_1", "e", "E", "inf1", "nan_", "Infinity",
                  "true", "false", "none", "sizeof", "ht_interrupted", "ht_print_end", "abs"]
FORMAT_TEXT = ["", " ", "x=", "%", "{{", "}}", "\\", "??/", "é", "\n"]
KEYWORDS = ["new", "begin", "let", "if", "while", "print", "printf", "def", "call", "get",
            "set", "tensor", "len", "raise", "~", "&", "<<", "//", "variable", "dot"]
_NUMBER_LIKE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\Z")
_NAME_CHARS = st.one_of(st.sampled_from("abcxyzXY_-+*/<>=!?.,:;#'$&|^~{}[]@%\\"),
                        st.sampled_from("0123456789"),
                        st.characters(categories=["Ll", "Lu", "Lo"], max_codepoint=0x2FFF))


def is_symbol_token(token):
    """Whether the reader reads `token` as a symbol (and not `new`, which is a node)."""
    return (bool(token) and not re.search(r'[\s()"]', token) and not _NUMBER_LIKE.match(token)
            and isinstance(atom(token), Sym) and token != "new")


def symbols():
    """Symbols: snek-LMS's x0, x1, ..., names that mean something elsewhere, random tokens."""
    return st.one_of(st.integers(0, 12).map(lambda i: f"x{i}"), st.sampled_from(TRICKY_SYMBOLS),
                     st.lists(_NAME_CHARS, min_size=1, max_size=5).map("".join)
                     ).filter(is_symbol_token)


# ------------------------------------------------------------------ printing


def quote(text):
    escapes = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    return '"' + "".join(escapes.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 32 else c)
                         for c in text) + '"'


def show(x):
    """IR text of a node."""
    if isinstance(x, list):
        return "(" + " ".join(show(i) for i in x) + ")"
    if isinstance(x, Sym):
        return str(x)
    if isinstance(x, str):
        return quote(x)
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        return ("inf" if x > 0 else "-inf") if math.isinf(x) else repr(x)
    return str(x)


# ------------------------------------------------------------------ programs


@dataclass
class IRCase:
    text: str
    kinds: list
    argsets: list = field(default_factory=list)
    mutated: bool = False
    original: str = ""

    @property
    def types(self):
        return [TYPES[k] for k in self.kinds]

    def __repr__(self):
        lines = [f"IRCase(kinds={self.kinds}, mutated={self.mutated}", f"text: {self.text}"]
        if self.mutated:
            lines.append(f"mutated from: {self.original}")
        lines.append(f"args: {self.argsets!r})")
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle):
        printer.text(repr(self))


class Vars:
    """The generator's view of a scope: name -> what it holds (a kind, 'none', 'cell',
    'counter' for a loop's cell, or ('function', arity, returns a value, recursive))."""

    def __init__(self, parent=None):
        self.parent, self.table = parent, {}

    def child(self):
        return Vars(self)

    def all(self):
        chain, scope = [], self
        while scope is not None:
            chain.append(scope.table)
            scope = scope.parent
        out = {}
        for table in reversed(chain):
            out.update(table)
        return out


SCALAR_KINDS = ("int", "float", "bool")
ARITH = ["+", "-", "*", "/", "//", "%"]
COMPARE = ["==", "!=", "<", "<=", ">", ">="]
BITWISE = ["&", "|", "^", "<<", ">>"]
MAX_LETS = 40


class IRGenerator:
    """Draws one well-formed program (its kinds are tracked only as far as choosing operands
    needs: the reference evaluator decides what the program means)."""

    def __init__(self, draw, bitwise):
        self.draw, self.bitwise = draw, bitwise
        self.lets_left = draw(st.integers(3, MAX_LETS))

    def name(self, scope):
        """A let's name: often a fresh symbol, sometimes one already bound (shadowing)."""
        bound = [n for n, v in scope.all().items() if v != "counter"]
        if bound and self.draw(st.integers(0, 3)) == 0:
            return self.draw(st.sampled_from(sorted(bound)))
        return self.draw(symbols())

    def literal(self, kind):
        draw = self.draw
        if kind == "int":
            return draw(st.one_of(st.integers(-10, 10), st.sampled_from(INT_EDGES)))
        if kind == "float":
            return draw(st.sampled_from([0.0, -0.0, 0.5, 1.5, -2.25, 1e16, 1e-05, 1e308, 5e-324,
                                         math.inf, -math.inf, math.nan, 0.1]))
        return draw(st.booleans())

    def scalar(self, scope):
        """An atom holding a number: a bound scalar or a literal."""
        names = sorted(n for n, v in scope.all().items() if v in SCALAR_KINDS)
        if names and self.draw(st.integers(0, 3)) != 0:
            return Sym(self.draw(st.sampled_from(names)))
        return self.literal(self.draw(st.sampled_from(SCALAR_KINDS)))

    def kind_of(self, x, scope):
        if isinstance(x, Sym):
            return scope.all()[str(x)]
        return "bool" if isinstance(x, bool) else "int" if isinstance(x, int) else "float"

    def chain(self, scope, result, depth):
        """Right-nested lets ending in a result; `result` is 'scalar', 'none' or 'any'."""
        scope = scope.child()
        lets = []
        for _ in range(self.draw(st.integers(0, 6))):
            if self.lets_left <= 0:
                break
            self.lets_left -= 1
            for name, rhs, holds in self.statement(scope, depth):
                lets.append((name, rhs))
                scope.table[str(name)] = holds
        want = result if result != "any" else self.draw(st.sampled_from(["scalar", "none"]))
        end = None if want == "none" else self.scalar(scope)
        for name, rhs in reversed(lets):
            end = [Sym("let"), name, rhs, end]
        return end

    def block(self, scope, result, depth):
        return [Sym("begin"), self.chain(scope, result, depth)]

    def statement(self, scope, depth):
        """[(name, rhs, what the name holds)] for one or a few lets."""
        draw = self.draw
        held = scope.all()
        cells = sorted(n for n, v in held.items() if v == "cell")
        functions = sorted(n for n, v in held.items() if isinstance(v, tuple))
        choices = ["arith", "compare", "cell", "print", "printf", "atom", "none"]
        if any(v != "counter" for v in held.values()):
            choices.append("alias")
        if self.bitwise:
            choices.append("bitwise")
        if cells:
            choices += ["set", "get"]
        if functions:
            choices.append("call")
        if depth > 0:
            choices += ["if", "if", "while"]
        choice = draw(st.sampled_from(choices))
        name = Sym(self.name(scope))
        if choice == "arith":
            op, a, b = draw(st.sampled_from(ARITH)), self.scalar(scope), self.scalar(scope)
            kinds = {self.kind_of(a, scope), self.kind_of(b, scope)}
            kind = "float" if op == "/" or "float" in kinds else "int"
            return [(name, [Sym(op), a, b], kind)]
        if choice == "compare":
            op = Sym(draw(st.sampled_from(COMPARE)))
            return [(name, [op, self.scalar(scope), self.scalar(scope)], "bool")]
        if choice == "bitwise":
            ints = [n for n, v in held.items() if v == "int"]
            a = Sym(draw(st.sampled_from(sorted(ints)))) if ints else self.literal("int")
            if draw(st.integers(0, 4)) == 0:
                return [(name, [Sym("~"), a], "int")]
            op = draw(st.sampled_from(BITWISE))
            b = self.literal("int") if draw(st.booleans()) else draw(st.integers(-2, 70))
            return [(name, [Sym(op), a, b], "int")]
        if choice == "atom":
            x = self.scalar(scope)
            return [(name, x, self.kind_of(x, scope))]
        if choice == "alias":       # another name for a value, a None, a cell or a function
            other = draw(st.sampled_from(sorted(n for n, v in held.items() if v != "counter")))
            return [(name, Sym(other), held[other])]
        if choice == "none":
            return [(name, None, "none")]
        if choice == "cell":
            out = [(name, Sym("new"), "cell")]
            if draw(st.integers(0, 3)):
                initial = [Sym("set"), name, self.scalar(scope)]
                out.append((Sym(self.name(scope.child())), initial, "none"))
            return out
        if choice == "set":
            cell = Sym(draw(st.sampled_from(cells)))
            return [(name, [Sym("set"), cell, self.scalar(scope)], "none")]
        if choice == "get":
            return [(name, [Sym("get"), Sym(draw(st.sampled_from(cells)))], "int")]
        if choice == "print":
            what = (draw(st.lists(st.sampled_from(TRICKY_TEXT), max_size=4).map("".join))
                    if draw(st.booleans()) else self.scalar(scope))
            return [(name, [Sym("print"), what], "none")]
        if choice == "printf":
            return [(name, [Sym("printf"), self.printf_args(scope)], "none")]
        if choice == "call":
            f = draw(st.sampled_from(functions))
            _, arity, returns, recursive = held[f]
            args = [self.scalar(scope) for _ in range(arity)]
            if recursive:       # its first argument counts the calls down
                args[0] = draw(st.integers(-2, 40))
            return [(name, [Sym("call"), Sym(f), args], "float" if returns else "none")]
        if choice == "if":
            result = draw(st.sampled_from(["scalar", "none"]))
            rhs = [Sym("if"), self.scalar(scope), self.block(scope, result, depth - 1),
                   self.block(scope, result, depth - 1)]
            return [(name, rhs, "float" if result == "scalar" else "none")]
        return self.while_loop(scope, depth)

    def printf_args(self, scope):
        draw = self.draw
        values = [self.scalar(scope) for _ in range(draw(st.integers(0, 3)))]
        pieces = []
        for v in values:
            pieces.append(draw(st.sampled_from(FORMAT_TEXT)))
            kind = self.kind_of(v, scope)
            if draw(st.integers(0, 9)):
                spec = draw(supported_specs("int" if kind == "bool" else kind))
            else:       # a spec Python rejects, or staged code does not support
                spec = draw(st.sampled_from(["d", ".3d", "s", "^5", "#x", ",", "q"]))
            pieces.append("{" + (":" + spec if spec else "") + "}")
        pieces.append(draw(st.sampled_from(["", "!", "{{}}", "%s", "\t"])))
        return ["".join(pieces), *values]

    def while_loop(self, scope, depth):
        """A loop over a counter cell compared with a constant: it always ends."""
        draw = self.draw
        counter = Sym(self.name(scope))
        others = symbols().filter(lambda n: n != counter)
        names = draw(st.lists(others, min_size=2, max_size=2, unique=True))
        test_value, step_value = map(Sym, names)
        bound = draw(st.integers(0, 5))
        fresh = scope.child()
        fresh.table[str(counter)] = "counter"
        test = [Sym("let"), test_value, [Sym("get"), counter],
                [Sym("let"), step_value, [Sym("<"), test_value, bound], step_value]]
        body_scope = fresh.child()
        body_scope.table[str(test_value)] = "int"
        body = [Sym("let"), test_value, [Sym("get"), counter],
                [Sym("let"), step_value, [Sym("+"), test_value, 1],
                 [Sym("let"), Sym(draw(symbols())), [Sym("set"), counter, step_value],
                  self.chain(body_scope, "none", depth - 1)]]]
        loop = [Sym("while"), [Sym("begin"), test], [Sym("begin"), body]]
        return [(counter, Sym("new"), "counter"),
                (Sym(draw(symbols())), [Sym("set"), counter, 0], "none"),
                (Sym(self.name(fresh)), loop, "none")]

    def function(self, scope, name):
        """A staged function's def (its body sees only its parameters and other functions),
        sometimes one that calls itself on a counter until it is <= 0."""
        draw = self.draw
        if draw(st.integers(0, 2)) == 0:
            return self.recursive_function(name)
        params = draw(st.lists(symbols(), min_size=1, max_size=3, unique=True))
        body_scope = Vars()
        body_scope.table.update({n: v for n, v in scope.all().items() if isinstance(v, tuple)})
        for p in params:
            body_scope.table[p] = "int"
        returns = draw(st.booleans())
        body = self.block(body_scope, "scalar" if returns else "none", 1)
        holds = ("function", len(params), returns, False)
        return [Sym("def"), name, [Sym(p) for p in params], body], holds

    def recursive_function(self, name):
        draw = self.draw
        n, acc, test, result, rest, step, inner = map(Sym, draw(st.lists(
            symbols().filter(lambda s: s != name), min_size=7, max_size=7, unique=True)))
        scope = Vars()
        scope.table.update({str(n): "int", str(acc): "int"})
        op = draw(st.sampled_from(ARITH + COMPARE))
        recurse = [Sym("let"), rest, [Sym("-"), n, 1],
                   [Sym("let"), step, [Sym(op), acc, self.scalar(scope)],
                    [Sym("let"), inner, [Sym("call"), name, [rest, step]], inner]]]
        choose = [Sym("if"), test, [Sym("begin"), acc], [Sym("begin"), recurse]]
        body = [Sym("begin"), [Sym("let"), test, [Sym("<="), n, 0],
                               [Sym("let"), result, choose, result]]]
        return [Sym("def"), name, [n, acc], body], ("function", 2, True, True)

    def program(self, kinds):
        draw = self.draw
        params = draw(st.lists(symbols(), min_size=len(kinds), max_size=len(kinds), unique=True))
        scope = Vars()
        for p, k in zip(params, kinds):
            scope.table[p] = k
        functions = []
        for _ in range(draw(st.integers(0, 2))):
            name = Sym(draw(symbols().filter(lambda s: s not in scope.table)))
            rhs, holds = self.function(scope, name)
            functions.append((name, rhs))
            scope.table[str(name)] = holds
        main = self.chain(scope, "any", 2)
        for name, rhs in reversed(functions):
            main = [Sym("let"), name, rhs, main]
        fname = draw(symbols())
        body = [Sym("begin"), [Sym("begin"), main]]
        return [Sym("def"), Sym(fname), [Sym(p) for p in params], body]


# ------------------------------------------------------------------ mutations

_TOKEN = re.compile(r'\s+|(\()|(\))|("(?:[^"\\]|\\.)*")|([^\s()"]+)', re.S)
WEIRD_ATOMS = ["9223372036854775808", "-9223372036854775809", "18446744073709551616",
               "99999999999999999999999999", "-9223372036854775808", "1e999", "-0", "+7", "0.0",
               "nan", "-inf", "True", "None", '"\\x00"', '"\\xff\\x01"', '"??/"', '"a\\"b"',
               '"%s%n"', '""', '"{}"', '"\\q"', "frobnicate", "x0", "in", "é"]


def tokens(text):
    return [m.group(0) for m in _TOKEN.finditer(text) if not m.group(0).isspace()]


def subtree_end(toks, start):
    """Index after the balanced subtree that starts at `start`."""
    if toks[start] != "(":
        return start + 1
    depth = 0
    for i in range(start, len(toks)):
        depth += {"(": 1, ")": -1}.get(toks[i], 0)
        if depth == 0:
            return i + 1
    return len(toks)


@st.composite
def mutated_text(draw, text):
    toks = tokens(text)
    for _ in range(draw(st.integers(1, 3))):
        if not toks:
            break
        i = draw(st.integers(0, len(toks) - 1))
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "paren", "atom", "keyword",
                                     "node", "subtree", "replace-subtree"]))
        if kind == "delete":
            del toks[i]
        elif kind == "duplicate":
            toks.insert(i, toks[i])
        elif kind == "swap" and i + 1 < len(toks):
            toks[i], toks[i + 1] = toks[i + 1], toks[i]
        elif kind == "paren":
            toks[i] = {"(": ")", ")": "("}.get(toks[i], "(")
        elif kind == "atom" and toks[i] not in "()":
            toks[i] = draw(st.one_of(st.sampled_from(WEIRD_ATOMS), symbols()))
        elif kind == "keyword" and toks[i] not in "()":
            toks[i] = draw(st.sampled_from(KEYWORDS))
        elif kind == "node":
            head = draw(st.sampled_from(["frobnicate", *KEYWORDS]))
            toks[i:i] = ["(", head, draw(st.sampled_from(WEIRD_ATOMS)), ")"]
        elif kind == "subtree":
            end = subtree_end(toks, i)
            toks[i:i] = toks[i:end]
        elif kind == "replace-subtree":
            end = subtree_end(toks, i)
            toks[i:end] = [draw(st.sampled_from(WEIRD_ATOMS))]
    return " ".join(toks)


@st.composite
def ir_cases(draw, bitwise=False, argsets=3, mutate=None):
    """An IRCase: a random program (mutated in about half the cases) and arguments."""
    kinds = draw(st.lists(st.sampled_from(SCALAR_KINDS), min_size=1, max_size=3))
    program = IRGenerator(draw, bitwise).program(kinds)
    text = show(program)
    case = IRCase(text, kinds)
    if mutate is None:
        mutate = draw(st.booleans())
    if mutate:
        case.mutated, case.original = True, text
        case.text = draw(mutated_text(text))
    case.argsets = [[draw(VALUES[k]()) for k in kinds] for _ in range(argsets)]
    return case
