"""Generated C is safe and exact for every input: printed strings, IR names, integer literals,
format specs and scalar arithmetic, each compared with what Python does.

Each property compiles programs (~0.2 s of the C compiler for a new one), so the example
counts are moderate; $HYTORCH_FUZZ_EXAMPLES raises them (never lowers them).
"""
import builtins
import math
import os
import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

import hytorch
from hytorch.api import IRProgram
from hytorch.ir.syntax import Sym, print_ir, read_atom
from hytorch.ir.format import format_pieces
from hytorch.backend.scope import C_PREFIX
from hytorch.build import FLAGS, compiler_command
from hytorch.c_runtime import SOURCE_DIR
from hytorch.staged_print import stage_format, stage_print

INT64_MIN, INT64_MAX = -2**63, 2**63 - 1
DEF, BEGIN, LET = Sym("def"), Sym("begin"), Sym("let")


def examples(default):
    return settings(max_examples=max(default, int(os.environ.get("HYTORCH_FUZZ_EXAMPLES") or 0)),
                    deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.filter_too_much, HealthCheck.data_too_large])


def program(body, *params, name="f"):
    """`(def NAME (PARAMS) (begin (begin BODY)))` as IR text."""
    return print_ir([DEF, Sym(name), [Sym(p) for p in params or ["in"]], [BEGIN, [BEGIN, body]]])


def lets(*pairs, result):
    """Right-nested lets: lets(("x0", rhs0), ("x1", rhs1), result=r)."""
    node = result
    for name, rhs in reversed(pairs):
        node = [LET, Sym(name), rhs, node]
    return node


def wrap(x):
    """x as a 64-bit int wraps it (compiled ints wrap on overflow)."""
    return (x - INT64_MIN) % 2**64 + INT64_MIN


def printed_by(capfdbinary, f, *args):
    """What f(*args) writes to fd 1 (C writes there, not to sys.stdout)."""
    capfdbinary.readouterr()
    f(*args)
    return capfdbinary.readouterr().out


def python_print(*values):
    """What Python's print(*values) writes, as UTF-8 bytes."""
    return (" ".join(map(str, values)) + "\n").encode("utf-8")


# ------------------------------------------------------------------ 1. printed strings

TRIGRAPHS = ["??" + c for c in "=/'()!<>-"]
TRICKY_TEXT = st.sampled_from([*TRIGRAPHS, "?", "\\", '"', "%", "%s", "%n", "\x00", "\n", "\r",
                               "\t", "{", "}", "*/", "/*", "é", "λ", "\U0001f600", "\u2028", "\x7f"])
TEXTS = st.lists(st.one_of(st.text(), TRICKY_TEXT), max_size=8).map("".join)


def escape_braces(text):
    return text.replace("{", "{{").replace("}", "}}")


@examples(60)
@given(text=TEXTS)
@example(text="what??!")
@example(text="C:??/dir")
@example(text="ends with ??/")
@example(text="nul\x00after")
def test_ir_print_and_printf_write_any_text_as_python_does(capfdbinary, text):
    body = lets(("x0", [Sym("print"), text]),
                ("x1", [Sym("printf"), [escape_braces(text) + "{}", Sym("in")]]), result=Sym("in"))
    f = hytorch.compile_ir(program(body), int)
    assert printed_by(capfdbinary, f, 7) == python_print(text) + python_print(text + "7")


@pytest.mark.parametrize("text", ["what??!", "C:??/dir", "ends with ??/", "nul\x00after", "100%s"])
def test_staged_print_writes_text_as_python_does(capfdbinary, text):
    def show(n):
        stage_print(text)
        stage_print(text, n)
        return n
    f = hytorch.stage(show, int)
    assert printed_by(capfdbinary, f, 7) == python_print(text) + python_print(text, 7)


def test_a_lone_surrogate_is_refused_when_compiling():
    with pytest.raises(hytorch.IRError, match="surrogate"):
        hytorch.compile_ir(program(lets(("x0", [Sym("print"), "a\ud800"]), result=None)), int)


# ------------------------------------------------------------------ 2. IR names in C

C_CLASHES = ["int", "return", "while", "double", "sizeof", "static", "NULL", "INFINITY", "NAN",
             "EOF", "HT_OK", "HT_ERROR", "HT_EXPORT", "ht_s", "ht_result", "ht_body", "ht_run",
             "ht_state", "ht_print_text", "ht_status", "printf", "stdout", "errno", "main",
             "exit", "memcpy", "int64_t", "size_t", "rng", "fail", "arena", "call_depth",
             "x2", "x2_1", "x2_1_1", "v_x2", "v_x2_1", "a-b", "a_b", "a_b_1", "_", "__x", "1x",
             "λ", "x²", "*/", "/*", "??/", "a\\b", "in", "print", "fn_f", "v_fn_f", "v_", "+"]


def is_ir_name(token):
    """A token the IR reader takes as a symbol (not a number, bool or None), usable as a let."""
    if not re.fullmatch(r'[^\s()"]+', token) or token == "new":
        return False
    try:
        return isinstance(read_atom(token), Sym)
    except ValueError:
        return False


NAMES = st.one_of(st.sampled_from(C_CLASHES),
                  st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=6)
                  ).filter(is_ir_name)


@st.composite
def named_programs(draw):
    """A program over int parameter `param` whose lets (and an `if` with blocks of its own)
    bind names drawn from a small pool, so they shadow and collide."""
    pool = draw(st.lists(NAMES, min_size=1, max_size=5, unique=True))
    param = draw(st.sampled_from(pool))
    bound = [param]

    def operand():
        return draw(st.one_of(st.sampled_from(bound).map(Sym), st.integers(-5, 5)))

    def block(depth):
        saved = list(bound)
        pairs = []
        for _ in range(draw(st.integers(1, 4))):
            name = draw(st.sampled_from(pool))
            if depth < 2 and draw(st.integers(0, 3)) == 0:
                test = draw(st.sampled_from(pool))
                pairs.append((test, [Sym("<"), operand(), operand()]))
                bound.append(test)
                rhs = [Sym("if"), Sym(test), block(depth + 1), block(depth + 1)]
            else:
                rhs = [Sym(draw(st.sampled_from(["+", "-", "*"]))), operand(), operand()]
            pairs.append((name, rhs))
            bound.append(name)
        node = [BEGIN, lets(*pairs, result=Sym(pairs[-1][0]))]
        bound[:] = saved
        return node

    body = block(0)[1]
    return program(body, param, name=draw(NAMES)), body, param


def evaluate(node, env):
    """The value of a let / if / + - * < program, by hand (ints wrap as compiled ones do)."""
    if isinstance(node, Sym):
        return env[str(node)]
    if not isinstance(node, list):
        return node
    head = str(node[0])
    if head == "let":
        return evaluate(node[3], {**env, str(node[1]): evaluate(node[2], env)})
    if head == "begin":
        return evaluate(node[1], env)
    if head == "if":
        return evaluate(node[2] if evaluate(node[1], env) else node[3], env)
    a, b = evaluate(node[1], env), evaluate(node[2], env)
    return {"+": lambda: wrap(a + b), "-": lambda: wrap(a - b), "*": lambda: wrap(a * b),
            "<": lambda: a < b}[head]()


@examples(60)
@given(case=named_programs())
def test_any_ir_names_compile_apart(case):
    text, body, param = case
    f = hytorch.compile_ir(text, int)
    for n in (5, -3, 2**40):
        assert f(n) == evaluate(body, {param: n}), text


def test_names_that_collide_after_renaming():
    body = lets(("x2", [Sym("+"), Sym("in"), 1]), ("x2", [Sym("+"), Sym("in"), 2]),
                ("x2_1", [Sym("+"), Sym("in"), 100]), ("r", [Sym("+"), Sym("x2"), Sym("x2_1")]),
                result=Sym("r"))
    assert hytorch.compile_ir(program(body), int)(5) == 112


def test_no_runtime_or_libc_name_starts_with_the_prefix():
    """Every C name made from an IR name starts with C_PREFIX; nothing the generated code
    includes may declare or #define a name that starts so."""
    header = '#include "hytorch_rt.h"\n'
    argv = [*compiler_command(), *FLAGS, "-I", str(SOURCE_DIR), "-x", "c", "-E"]
    expanded = subprocess.run([*argv, "-"], input=header, capture_output=True, text=True, check=True)
    macros = subprocess.run([*argv, "-dM", "-"], input=header, capture_output=True, text=True,
                            check=True)
    identifiers = set(re.findall(r"\b[A-Za-z_]\w*", expanded.stdout + macros.stdout))
    assert not [i for i in identifiers if i.startswith(C_PREFIX)]


def test_comments_in_generated_c_hold_any_name():
    name = "f*/int/**/oops;/*"
    tensors = lets(("a*/b", [Sym("tensor"), [2, 3]]),
                   ("c*/d", [Sym("variable"), Sym("a*/b"), False]),
                   result=Sym("in"))
    assert hytorch.compile_ir(program(tensors, name=name), int)(3) == 3


def test_gradient_names_never_hide_the_programs_names():
    """The backward pass binds names of its own (g0, g1, ...): none that the program binds,
    and none that it sees afterwards."""
    def training(result, *first):
        return program(lets(*first, ("w", [Sym("tensor"), [1, 2]]),
                            ("g1", [Sym("variable"), Sym("w"), False]),
                            ("t", [Sym("tensor"), [1, 2]]),
                            ("l", [Sym("call"), Sym("mse_loss"), [Sym("g1"), Sym("t")]]),
                            ("b", [Sym("call"), Sym("l"), Sym("backward")]), result=Sym(result)))
    assert hytorch.compile_ir(training("g0", ("g0", [Sym("+"), Sym("in"), 100])), int)(1) == 101
    with pytest.raises(hytorch.IRError, match="`g2` is used but not bound"):
        hytorch.compile_ir(training("g2"), int)


# ------------------------------------------------------------------ 3. integer literals


@pytest.mark.parametrize("literal", ["18446744073709551616", "9223372036854775808",
                                     "-9223372036854775809", "100000000000000000000000",
                                     "1" + "0" * 5000])
def test_a_wide_integer_literal_is_an_error_naming_it(literal):
    text = f"(def f (in)\n  (begin (begin (let x0 (+ in {literal}) x0))))"
    with pytest.raises(hytorch.IRSyntaxError) as e:
        hytorch.compile_ir(text, int)
    assert literal[:40] in str(e.value)
    assert (e.value.line, e.value.column) == (2, text.splitlines()[1].index(literal) + 1)


def test_the_widest_integer_literals_are_valid():
    f = hytorch.compile_ir(program(lets(("x0", [Sym("+"), Sym("in"), INT64_MIN]),
                                        ("x1", [Sym("+"), Sym("x0"), INT64_MAX]), result=Sym("x1"))),
                           int)
    assert f(5) == 4
    assert hytorch.compile_ir("(def f (in) (begin (begin (let x0 (- in -0009223372036854775808) x0))))",
                              int)(0) == INT64_MIN


def test_a_wide_integer_in_an_ir_program_built_in_python_is_an_error():
    node = [DEF, Sym("f"), [Sym("in")], [BEGIN, [BEGIN, lets(("x0", [Sym("+"), Sym("in"), 2**64]),
                                                             result=Sym("x0"))]]]
    with pytest.raises(hytorch.IRError, match="18446744073709551616 does not fit"):
        hytorch.compile_ir(IRProgram(node), int)


# ------------------------------------------------------------------ 4. format specs

SPECIAL_FLOATS = [math.nan, -math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, -2.5e-308,
                  1.7976931348623157e308, 0.5, -2.5, 1e16, 1e-5, 123456.789, -0.000499]
SPECIAL_INTS = [0, 1, -1, 7, -42, 10**15, INT64_MIN, INT64_MAX]
SPECIAL_VALUES = {int: SPECIAL_INTS, float: SPECIAL_FLOATS, bool: [True, False]}
KIND_NAMES = {int: "int", float: "float", bool: "bool"}
MORE_VALUES = {int: st.lists(st.integers(INT64_MIN, INT64_MAX), max_size=3),
               float: st.lists(st.floats(allow_nan=True), max_size=3), bool: st.just([])}
FILLS = st.sampled_from(list(" *0x\n\x00é\U0001f600<=>^"))


@st.composite
def specs(draw):
    """Format specs from Python's grammar, mostly within what staged code supports."""
    parts = [
        draw(st.one_of(st.just(""), st.sampled_from("<>=^"),
                       st.tuples(FILLS, st.sampled_from("<>=^")).map("".join))),
        draw(st.sampled_from(["", "", "+", "-", " "])),
        draw(st.sampled_from(["", "", "", "z"])),
        draw(st.sampled_from(["", "", "", "#"])),
        draw(st.sampled_from(["", "0"])),
        draw(st.one_of(st.just(""), st.integers(0, 40).map(str), st.just("99999999999999999999"))),
        draw(st.sampled_from([""] * 8 + [",", "_"])),
        draw(st.one_of(st.just(""), st.integers(0, 25).map(".{}".format),
                       st.integers(1070, 1110).map(".{}".format), st.just(".2147483648"))),
        draw(st.sampled_from(["", "", "d", "f", "F", "e", "E", "g", "G", "%", "n", "x", "s"])),
    ]
    return "".join(parts)


def python_format(fmt, value):
    try:
        return fmt.format(value)
    except (ValueError, MemoryError):  # MemoryError: a width such as 99999999999
        return None


def staged_code_may_refuse(spec, conversion, kind):
    """The specs README documents as not staged: digit grouping, types other than d, f, e, g,
    % (and upper case), a float's empty type with a precision or '#', a conversion with a spec."""
    m = re.fullmatch(r"(?:.?[<>=^])?[-+ ]?z?(?P<alt>#)?0?\d*(?P<group>[,_])?(?P<precision>\.\d+)?"
                     r"(?P<type>[a-zA-Z%]?)", spec, re.S)
    number_types = "fFeEgG%" + ("d" if kind is not float else "")
    return bool(m is None or m["group"] or m["type"] not in ["", *number_types]
                or (conversion and spec)
                or (kind is float and not m["type"] and (m["precision"] or m["alt"])))


@examples(80)
@given(data=st.data(), spec=specs(), kind=st.sampled_from([int, float, bool]),
       conversion=st.sampled_from(["", "", "", "", "!r", "!s"]))
@example(data=None, spec=".2f", kind=float, conversion="")
@example(data=None, spec="08.3f", kind=float, conversion="")
@example(data=None, spec="99999999999d", kind=int, conversion="")
def test_printf_formats_as_python(capfdbinary, data, spec, kind, conversion):
    values = SPECIAL_VALUES[kind] + (data.draw(MORE_VALUES[kind]) if data else [])
    check_format(capfdbinary, spec, conversion, kind, values)


TRICKY_SPECS = ["", "z", "z.1f", "+z.2e", ".2f", "08.3f", "<08", ">08", "^+9.2%", "=+10.2f", "#.0f",
                "#g", "#.3g", "#.0%", ".1100e", "#.1105g", ".1080f", ".1090%", "0<5", "*^9",
                "\x00>5", "é>6", " >05", "<05", "=05", "^05", "+", " ", "e", "E", "G", "F", "%",
                ".0g", ".0e", ".17g", ".16e", "d", "#d", "#", "+d", " 20d", "*<25d", "=+25"]


@pytest.mark.parametrize("kind", [float, int, bool])
def test_printf_formats_tricky_specs_as_python(capfdbinary, kind):
    """As test_printf_formats_as_python, for chosen specs: all that compile print in one line."""
    fields = []
    for spec in TRICKY_SPECS:
        field = "{:" + spec + "}"
        try:
            format_pieces(field, [KIND_NAMES[kind]])
        except ValueError as e:
            if python_format(field, SPECIAL_VALUES[kind][0]) is not None:
                assert staged_code_may_refuse(spec, "", kind), f"{field!r} refused: {e}"
            continue
        assert python_format(field, SPECIAL_VALUES[kind][0]) is not None, f"{field!r} accepted"
        fields.append(field)
    body = lets(("x0", [Sym("printf"), ["|".join(fields), *[Sym("in")] * len(fields)]]), result=None)
    f = hytorch.compile_ir(program(body), kind)
    for value in SPECIAL_VALUES[kind]:
        expected = "|".join(field.format(value) for field in fields) + "\n"
        assert printed_by(capfdbinary, f, value) == expected.encode("utf-8"), value


def check_format(capfdbinary, spec, conversion, kind, values):
    """printf of `{conversion:spec}` prints each value as Python's str.format does, or both
    refuse the spec, or staged code refuses one it documents as unsupported."""
    fmt = "{" + conversion + (":" + spec if spec else "") + "}"
    expected = [python_format(fmt, v) for v in values]
    text = program(lets(("x0", [Sym("printf"), [fmt, Sym("in")]]), result=None))
    if expected[0] is None:
        with pytest.raises(hytorch.IRError):
            hytorch.compile_ir(text, kind)
        return
    try:
        f = hytorch.compile_ir(text, kind)
    except hytorch.IRError as e:
        assert staged_code_may_refuse(spec, conversion, kind), f"{fmt!r} refused: {e}"
        return
    for value, python_text in zip(values, expected):
        assert printed_by(capfdbinary, f, value) == (python_text + "\n").encode("utf-8"), (fmt, value)


@pytest.mark.parametrize("kind, values", [(float, SPECIAL_FLOATS), (int, SPECIAL_INTS),
                                          (bool, [True, False])])
def test_print_of_a_value_is_python_print(capfdbinary, kind, values):
    f = hytorch.compile_ir(program(lets(("x0", [Sym("print"), Sym("in")]), result=None)), kind)
    for v in values:
        assert printed_by(capfdbinary, f, v) == python_print(v)


def powers_of_two_and_neighbours():
    """Doubles next to a power of two, where the rounding interval is lopsided."""
    return st.builds(lambda e, step: math.nextafter(2.0 ** e, step * math.inf) if step else 2.0 ** e,
                     st.integers(-1074, 1023), st.sampled_from([-1, 0, 1]))


@examples(400)
@given(x=st.one_of(st.floats(), powers_of_two_and_neighbours()))
@example(x=2.0 ** -24)
@example(x=9.5367431640625e-07)
def test_a_printed_float_is_pythons_repr(capfdbinary, compiled, x):
    if "print float" not in compiled:
        body = lets(("x0", [Sym("print"), Sym("in")]), result=None)
        compiled["print float"] = hytorch.compile_ir(program(body), float)
    assert printed_by(capfdbinary, compiled["print float"], x) == python_print(x)


@pytest.mark.parametrize("field", ["{:99999999999999999999d}", "{:.2147483648f}", "{:z}", "{:.3d}",
                                   "{:s}", "{:=s}", "{:,}", "{:x}", "{!r:>5}"])
def test_a_spec_python_refuses_or_staged_code_does_not_support_is_a_staging_error(field):
    with pytest.raises(hytorch.StagingError):
        hytorch.stage(lambda n: stage_print(stage_format(field, n)), int)


# ------------------------------------------------------------------ 5. Python's numbers

NEAR_POWERS = st.builds(lambda e, d, s: s * (2**e + d), st.integers(50, 63), st.integers(-2000, 2000),
                        st.sampled_from([1, -1])).filter(lambda x: INT64_MIN <= x <= INT64_MAX)
INTS = st.one_of(st.integers(INT64_MIN, INT64_MAX), NEAR_POWERS, st.integers(-20, 20),
                 st.sampled_from([INT64_MIN, INT64_MAX, INT64_MIN + 1, 2**53, 2**53 + 1, 3]))
FLOATS = st.one_of(st.floats(allow_nan=True), st.sampled_from(SPECIAL_FLOATS), INTS.map(float))


@pytest.fixture(scope="module")
def compiled():
    """Programs compiled once for all examples of the module's properties."""
    programs = {}
    yield programs
    programs.clear()


def binary(compiled, op, left, right):
    """The compiled program `(op in1 in2)` for parameters of the given types."""
    if (op, left, right) not in compiled:
        body = lets(("x0", [Sym(op), Sym("in1"), Sym("in2")]), result=Sym("x0"))
        compiled[op, left, right] = hytorch.compile_ir(program(body, "in1", "in2"), left, right)
    return compiled[op, left, right]


def python_or_zero_division(f, *args):
    try:
        return f(*args)
    except ZeroDivisionError:
        return ZeroDivisionError


def same(a, b):
    """Equal as Python shows them: -0.0 is not 0.0, nan is nan."""
    return type(a) is type(b) and repr(a) == repr(b)


@examples(2500)
@given(x=INTS, y=INTS)
@example(x=2**62 + 1, y=3)
@example(x=INT64_MAX, y=INT64_MIN)
@example(x=INT64_MIN, y=-1)
@example(x=0, y=-(2**60))
def test_int_true_division_is_correctly_rounded(compiled, x, y):
    assert same(python_or_zero_division(binary(compiled, "/", int, int), x, y),
                python_or_zero_division(lambda: x / y))


@examples(1000)
@given(x=INTS, y=INTS)
@example(x=INT64_MIN, y=-1)
def test_int_floor_division_and_modulo_are_pythons(compiled, x, y):
    """INT64_MIN // -1 is 2**63 in Python, which wraps to INT64_MIN as every overflow does."""
    expected = python_or_zero_division(lambda: (wrap(x // y), x % y))
    got = python_or_zero_division(lambda: (binary(compiled, "//", int, int)(x, y),
                                           binary(compiled, "%", int, int)(x, y)))
    assert got == expected


@examples(1000)
@given(x=FLOATS, y=FLOATS)
@example(x=-5.0, y=math.inf)
@example(x=math.inf, y=2.0)
@example(x=-0.0, y=3.0)
@example(x=1e308, y=1e-308)
def test_float_division_floor_division_and_modulo_are_pythons(compiled, x, y):
    for op, python in [("/", lambda: x / y), ("//", lambda: x // y), ("%", lambda: x % y)]:
        assert same(python_or_zero_division(binary(compiled, op, float, float), x, y),
                    python_or_zero_division(python)), op


COMPARISONS = ["<", "<=", ">", ">=", "==", "!="]


def mixed_comparisons(compiled):
    """All comparisons of an int in1 with a float in2, both ways, as the bits of an int."""
    if "mixed" in compiled:
        return compiled["mixed"]
    pairs, terms = [], []
    for i, op in enumerate(COMPARISONS):
        for j, (a, b) in enumerate([("in1", "in2"), ("in2", "in1")]):
            bit = 2 * i + j
            pairs += [(f"c{bit}", [Sym(op), Sym(a), Sym(b)]),
                      (f"m{bit}", [Sym("*"), Sym(f"c{bit}"), 2**bit])]
            terms.append(f"m{bit}")
    total = "m0"
    for k, term in enumerate(terms[1:]):
        pairs.append((f"s{k}", [Sym("+"), Sym(total), Sym(term)]))
        total = f"s{k}"
    compiled["mixed"] = hytorch.compile_ir(program(lets(*pairs, result=Sym(total)), "in1", "in2"),
                                           int, float)
    return compiled["mixed"]


def python_comparison_bits(x, y):
    ops = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
           ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}
    return sum(ops[op](*pair) << (2 * i + j) for i, op in enumerate(COMPARISONS)
               for j, pair in enumerate([(x, y), (y, x)]))


@examples(1000)
@given(x=INTS, data=st.data())
@example(x=2**53 + 1, data=None)
def test_an_int_compares_with_a_float_exactly(compiled, x, data):
    near = st.sampled_from([float(x), math.nextafter(float(x), math.inf),
                            math.nextafter(float(x), -math.inf)])
    y = data.draw(st.one_of(near, FLOATS)) if data else float(2**53)
    assert mixed_comparisons(compiled)(x, y) == python_comparison_bits(x, y)


# ------------------------------------------------------------------ float -x, abs, ** (found by fuzzing)

def python_float_ops(x):
    """-x, abs(x) and x ** 3 as Python computes them (None where ** raises OverflowError)."""
    try:
        cube = x ** 3
    except OverflowError:
        cube = None
    return -x, abs(x), cube


@pytest.fixture(scope="module")
def float_ops():
    return {n: hytorch.stage(f, float) for n, f in
            [("neg", lambda x: -x), ("abs", abs), ("cube", lambda x: x ** 3)]}


@examples(300)
@given(x=st.one_of(st.sampled_from(SPECIAL_FLOATS), st.floats(allow_nan=True)))
def test_float_negation_abs_and_power_are_pythons(float_ops, x):
    neg, absolute, cube = python_float_ops(x)
    assert math.copysign(1, float_ops["neg"](x)) == math.copysign(1, neg) or math.isnan(x)
    assert float_ops["neg"](x) == neg or math.isnan(x)
    assert repr(float_ops["abs"](x)) == repr(absolute)
    if cube is None:
        with pytest.raises(OverflowError, match="Numerical result out of range"):
            float_ops["cube"](x)
    else:
        assert repr(float_ops["cube"](x)) == repr(cube)


@pytest.mark.parametrize("fmt", ["{} {0}", "{0} {}"])
def test_mixed_field_numbering_is_refused_as_python_does(fmt):
    with pytest.raises(ValueError, match="cannot switch"):
        fmt.format(1, 2)
    with pytest.raises(ValueError, match="cannot switch"):
        format_pieces(fmt, ["int", "int"])
    with pytest.raises(hytorch.IRError, match="cannot switch"):
        hytorch.compile_ir(program(lets(("x0", [Sym("printf"), [fmt, Sym("in"), Sym("in")]]), result=None)))


@pytest.mark.parametrize("fmt", ["{} {0}", "{0} {}", "{} {}"])
def test_staged_format_checks_its_fields_as_python_does(fmt):
    with pytest.raises((ValueError, IndexError)) as python:
        fmt.format(1)
    with pytest.raises(hytorch.StagingError) as staged:
        hytorch.lms_compile(lambda n: stage_print(stage_format(fmt, n)))
    assert str(python.value) in str(staged.value)


def wrap64(n):
    return (n - INT64_MIN) % 2**64 + INT64_MIN


SMALL_C_OPERANDS = st.one_of(st.integers(-2**33, 2**33),
                             st.sampled_from([2**15 - 1, 2**15, -2**15, 2**31 - 1, -2**31, 65536]),
                             st.sampled_from(["b"]))


@examples(25)
@given(terms=st.lists(st.tuples(st.sampled_from(["+", "-", "*"]), SMALL_C_OPERANDS,
                                SMALL_C_OPERANDS), min_size=1, max_size=8),
       flag=st.booleans())
@example(terms=[("+", 1, 2**31 - 1), ("*", 65536, 32768), ("+", "b", 2**31 - 1)], flag=True)
def test_literals_and_bools_compute_in_64_bits(capfdbinary, terms, flag):
    """Found by fuzzing IR text: (+ 1 2147483647) gave -2147483648, two C ints added in 32 bits.
    Literals and bools (C ints) are operands; every result is an int64 as in Python."""
    pairs, expected = [], []
    for i, (op, a, c) in enumerate(terms):
        pairs += [(f"x{i}", [Sym(op), Sym("b") if a == "b" else a, Sym("b") if c == "b" else c]),
                  (f"p{i}", [Sym("print"), Sym(f"x{i}")])]
        a, c = (flag if v == "b" else v for v in (a, c))
        expected.append(str(wrap64({"+": a + c, "-": a - c, "*": a * c}[op])))
    f = hytorch.compile_ir(program(lets(*pairs, result=None), "b"), bool)
    assert printed_by(capfdbinary, f, flag) == "".join(e + "\n" for e in expected).encode()


# Atoms an IR text may put where a loader node wants True/False or a batch size: C-looking
# names and expressions among them (an MNIST batch size once went into the C as it was read).
LOADER_ATOMS = st.one_of(
    st.booleans(), st.integers(-3, 2**63 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([Sym("ht_s"), Sym("+1+0*ht_s->call_depth--"), Sym("x0"), Sym("None")]),
    st.text(max_size=8))


@examples(60)
@given(train=LOADER_ATOMS, download=LOADER_ATOMS, batch=LOADER_ATOMS, shuffle=LOADER_ATOMS)
@example(train=True, download=True, batch=Sym("+1+0*ht_s->call_depth--"), shuffle=False)
@example(train=True, download=True, batch=64, shuffle=False)
@example(train=True, download=True, batch=2**62, shuffle=False)
def test_a_loader_node_takes_only_bools_and_a_batch_size(train, download, batch, shuffle):
    from hytorch.backend.c_render import render_c
    body = lets(("x0", [Sym("transform"), Sym("toTensor")]),
                ("x1", [Sym("loader"), [Sym("MNIST"), train, download, Sym("x0"), batch, shuffle]]),
                ("x2", [Sym("len"), Sym("x1")]), result=Sym("x2"))
    node = hytorch.parse_ir(program(body)).node
    valid = (all(isinstance(b, bool) for b in (train, download, shuffle))
             and isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1)
    if not valid:
        with pytest.raises(hytorch.IRError, match="an MNIST loader is"):
            render_c(node, ["object"])
        return
    if batch * 28 * 28 * 4 > 2**48:   # batches no machine holds
        with pytest.raises(hytorch.IRError, match="more than"):
            render_c(node, ["object"])
        return
    (loader,) = [s for s in render_c(node, ["object"])["slots"] if s["sym"] == "x1"]
    assert (loader["batch_size"], loader["train"], loader["shuffle"]) == (batch, train, shuffle)


@pytest.mark.parametrize("args", ['("a" "b")', "1", "(0.5 True)", "(x0 1.0)", "(0.5)"])
def test_a_normalize_transform_takes_two_numbers(args):
    text = (f"(def f (in) (begin (begin (let x0 (transform normalize {args}) (let x1 (loader "
            "(MNIST True True x0 4 False)) (let x2 (len x1) x2))))))")
    with pytest.raises(hytorch.IRError, match="normalize"):
        hytorch.compile_ir(text, object)


# Python floats that meet float32 tensors: torch rounds each to float32 once (to even on a
# tie), NaN and infinities included, and beyond float32's range to an infinity.
FLOAT32_CONSTANTS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1.0 + 2.0**-24, 1.0 + 3 * 2.0**-24, -(1.0 + 2.0**-24), 2.0**-149,
                     2.0**-150, 3.4028235677973366e38, 3.4028236e38, 1e39, -0.0, 0.1]))


@examples(25)
@given(k=FLOAT32_CONSTANTS)
@example(k=1.0 + 2.0**-24)
@example(k=math.nan)
@example(k=-math.inf)
def test_float_constants_meet_float32_tensors_as_in_torch(k):
    import torch

    def f(x):
        return torch.stack([x * k, x + k, x - k, x / k, torch.clamp(x, min=k), x.clamp(max=k)])

    x = torch.tensor([1.0, -2.5, 0.0, 3e38, float("nan")])
    if math.isfinite(k) and abs(k) > 3.4028234663852886e38:   # torch's clamp refuses it
        with pytest.raises(RuntimeError, match="overflow"):
            f(x)
        with pytest.raises(hytorch.StagingError, match="overflow"):
            hytorch.stage(f, hytorch.TensorType([5]))
        return
    got, expected = torch.as_tensor(hytorch.stage(f, hytorch.TensorType([5]))(x)), f(x)
    same_bits = got.view(torch.int32) == expected.view(torch.int32)
    assert bool((same_bits | (got.isnan() & expected.isnan())).all()), (got, expected)


@pytest.mark.parametrize("dims", ["(4611686018427387904)", "(4294967296 4294967296)",
                                  "(70368744177665)"])
def test_a_tensor_too_big_for_any_machine_is_an_error_not_a_wrapped_size(dims):
    # (2**62 floats once became an 18446744073709551616-byte allocation, cut to 64 bits by the
    # C compiler: a segfault; 2**32 x 2**32 silently summed to 0.0)
    text = (f"(def f (in) (begin (begin (let x0 (tensor {dims}) "
            "(let x1 (array-get x0 data 0) x1)))))")
    with pytest.raises(hytorch.IRError, match="more than"):
        hytorch.compile_ir(text, int)


def test_a_staged_tensor_too_big_for_any_machine_is_a_staging_error():
    import torch

    with pytest.raises(hytorch.StagingError, match="more than"):
        hytorch.stage(lambda x: x.repeat(2**62).sum().item(), hytorch.TensorType([1]))
    with pytest.raises(ValueError, match="more than"):
        hytorch.TensorType([2**31, 2**31])
    assert torch.ones(1).repeat(2).sum().item() == 2.0


def test_intermediate_tensors_too_big_together_are_an_error():
    # 1000 temporaries of 2**38 bytes each are more than 2**48 bytes together
    f = lambda x: sum(x.repeat(2**36) * float(i) for i in range(1000)).sum().item()  # noqa: E731
    with pytest.raises(hytorch.HyTorchError, match="more than"):
        hytorch.stage(f, hytorch.TensorType([1]))


@pytest.mark.parametrize("show", [
    lambda n: stage_print([n, 1]),
    lambda n: stage_print("n is", {"n": (n,)}),
    lambda n: stage_print(stage_format("{}", (n, 2))),
    lambda n: stage_print(stage_format("{} and {}", n, [n])),
    lambda n: stage_print(stage_format("{x}", x={n})),
])
def test_a_staged_value_inside_a_container_is_refused_not_printed_as_its_name(show):
    # (Python prints the values; the compiled code printed "[<staged int in>, 1]")
    with pytest.raises(hytorch.StagingError, match="inside a list, tuple, set or dict"):
        hytorch.lms_compile(show, int)


def test_containers_of_plain_values_print_as_python_prints_them(capfdbinary):
    def show(n):
        stage_print([1, (2.5, "a")], {"k": None}, n)
        stage_print(stage_format("{} {}", [3, {4}], n))
        return n
    f = hytorch.stage(show, int)
    assert printed_by(capfdbinary, f, 7) == (python_print([1, (2.5, "a")], {"k": None}, 7)
                                             + python_print("[3, {4}] 7"))


DEEP_RECURSION = """
import sys, threading, types, hy, hytorch
m = types.ModuleType("deep")
for form in hy.read_many('''
(require hytorch [defstaged])
(defstaged f [n]
  (if (<= n 0)
      0
      (do (setv a n)
          (for [k (range 1600)] (setv a (% (+ (* a 3) k) 1000003)))
          (+ (% a 7) (f (- n 1))))))'''):
    hy.eval(form, module=m)
g = hytorch.stage(m.f, int)
def call(n):
    try:
        print(n, g(n), flush=True)
    except hytorch.ExecutionError as e:
        print(n, "error:", e, flush=True)
call(3)
call(600)
threading.stack_size(4 << 20)
for n in (300, 20):
    t = threading.Thread(target=call, args=(n,))
    t.start(); t.join()
call(5)
"""


def test_staged_recursion_that_would_fill_the_c_stack_is_an_error():
    # f's frame holds its 3000-odd lets (compiled at -O0): 600 calls once overflowed an 8 MiB
    # stack well below HT_MAX_CALL_DEPTH (a segfault); a thread's smaller stack fills sooner
    out = subprocess.run([sys.executable, "-c", DEEP_RECURSION], capture_output=True, text=True,
                         timeout=600)
    lines = out.stdout.splitlines()
    assert out.returncode == 0, out.stderr[-2000:]
    assert lines[0] == "3 3" and lines[3:] == ["20 59", "5 8"], lines
    for line, n in zip(lines[1:3], (600, 300)):
        assert line == (f"{n} error: f: staged function f0 recursed so deep that it filled "
                        "the C stack")


# Any text but NUL (a string value cannot hold one), lone surrogates included.
TEXTS_WITH_SURROGATES = st.text(st.characters(blacklist_categories=(), blacklist_characters="\0"),
                                max_size=6)


@examples(25)
@given(a=TEXTS_WITH_SURROGATES, b=TEXTS_WITH_SURROGATES)
@example(a="\ud800", b="\\ud800")
@example(a="\udc00", b="\ud800")
def test_string_values_are_pythons_lone_surrogates_too(a, b):
    # ("\ud800" was written as the text \ud800: it came back as six characters, equal to "\\ud800")
    f = hytorch.compile_ir(program(lets(("x0", [Sym("=="), Sym("in"), 0]),
                                        ("x1", [Sym("if"), Sym("x0"), [BEGIN, a], [BEGIN, b]]),
                                        result=Sym("x1"))), int)
    g = hytorch.compile_ir(program(lets(("x0", [Sym("=="), a, b]), result=Sym("x0"))), int)
    assert (f(0), f(1), g(0)) == (a, b, a == b)


@examples(25)
@given(message=st.one_of(st.text(st.characters(blacklist_categories=())),
                         st.text(min_size=1, max_size=3).map(lambda t: t * 700)),
       exception=st.sampled_from(["ValueError", "KeyError", "RuntimeError", "NoSuchError"]))
@example(message="x" * 2000, exception="ValueError")
@example(message="before\x00after", exception="ValueError")
def test_a_raise_carries_its_message_whole(message, exception):
    # (messages went through a 1024-byte C buffer: cut at ~1011 characters and at NUL)
    f = hytorch.compile_ir(program(lets(("x0", [Sym("raise"), exception, message]), result=None)),
                           int)
    with pytest.raises(hytorch.ExecutionError) as e:
        f(1)
    if exception == "NoSuchError":
        assert str(e.value) == f"f: NoSuchError: {message}"
    else:
        assert isinstance(e.value, getattr(builtins, exception)) and e.value.args == (message,)


@pytest.fixture(scope="module")
def float_power():
    return hytorch.compile_ir("(def f (in1 in2) (begin (begin (let x0 (** in1 in2) x0))))",
                              float, float)


@examples(300)
@given(x=st.one_of(st.sampled_from(SPECIAL_FLOATS), st.floats(allow_nan=True)),
       y=st.one_of(st.sampled_from(SPECIAL_FLOATS + [0.5, -1.0, -3.0, 1 / 3]),
                   st.floats(allow_nan=True)))
@example(x=0.0, y=-1.0)
@example(x=-0.0, y=-3.0)
@example(x=0.0, y=-math.inf)
@example(x=-8.0, y=1 / 3)
@example(x=-math.inf, y=0.5)
def test_float_power_is_pythons_or_its_error(float_power, x, y):
    try:
        expected = x ** y
    except OverflowError as e:
        if str(e) == "complex exponentiation":   # a complex power, too big
            expected = complex(math.inf)
        else:
            with pytest.raises(OverflowError, match=re.escape(str(e))):
                float_power(x, y)
            return
    except ZeroDivisionError as e:
        with pytest.raises(ZeroDivisionError, match=re.escape(str(e))):
            float_power(x, y)
        return
    if isinstance(expected, complex):   # which compiled code cannot hold: an error, not a NaN
        with pytest.raises(ValueError, match="complex number"):
            float_power(x, y)
        return
    assert repr(float_power(x, y)) == repr(expected)


@examples(40)
@given(n=st.integers(-2**70, 2**70).map(wrap), k=st.one_of(st.integers(1, 40),
                                                           st.integers(1, 10**15)))
@example(n=3, k=10**12)
@example(n=-1, k=10**15 + 1)
def test_a_staged_int_to_a_constant_power_wraps_as_its_products_do(n, k):
    # (past 16 by repeated squaring: k = 10**12 once made a million lets, then gave up)
    f = hytorch.stage(lambda x: x ** k, int)
    assert f(n) == wrap(pow(n, k, 2**64))
