"""IR text: printing and reading are inverse, snek-LMS's printed IR reads, errors name positions."""
import pathlib
import re

import pytest

import hytorch
from hytorch.ir.syntax import Sym, parse_ir as parse_node, print_ir

def seed_demo_ir():
    """The MNIST demo's IR, copied verbatim from the snek-LMS README (shared/seeds/001)."""
    path = pathlib.Path(__file__).parent / "data" / "snek_lms_mnist_demo.ir"
    return path.read_text().strip()


def test_print_parse_print_is_stable():
    text = ('(def f (in1 in2) (begin (begin (let x0 (+ in1 -1) (let x1 (printf ("a\\tb \\"q\\" {:.6f}" x0)) '
            '(let x2 (* x0 0.0005) (let x3 (== x2 1e-05) (let x4 (print "done (100%)") x2))))))))')
    program = hytorch.parse_ir(text)
    assert str(program) == text
    assert str(hytorch.parse_ir(str(program))) == text


def test_atoms_read_whole():
    node = parse_node("(f 0.0005 -1 1e-05 100.0 True False None x12 \"s\")")
    assert node == [Sym("f"), 0.0005, -1, 1e-05, 100.0, True, False, None, Sym("x12"), "s"]
    assert isinstance(node[0], Sym) and not isinstance(node[-1], Sym)
    assert type(node[2]) is int and type(node[1]) is float


def test_strings_are_escaped_properly():
    tricky = 'Train Epoch: 1 [6000/60000 (10%)]\tLoss: "x" \\ \n'
    text = print_ir([Sym("print"), tricky])
    assert parse_node(text) == [Sym("print"), tricky]


def test_snek_lms_demo_ir_parses_and_prints_back():
    text = seed_demo_ir()
    program = hytorch.parse_ir(text)
    assert program.name == "runX" and program.params == ["in"]
    assert str(program) == text
    assert "(for_dataloader x4 (x24 t0 x25)" in str(program)


@pytest.mark.parametrize("text, message, line, column", [
    ("(def f (in) (begin (begin x0))", "never closed", 1, 1),
    ("(def f (in) (begin x0)))", "unexpected ')'", 1, 24),
    ("(def f (in)\n  (begin (begin (print \"oops))))", "unterminated string", 2, 24),
    ("", "empty", 1, 1),
    ("(a) (b)", "after the end", 1, 5),
    ('(print "\\x4")', "escape", 1, 9),
    ("(f x0\n   18446744073709551616)", "integer literal 18446744073709551616 does not fit", 2, 4),
])
def test_syntax_errors_name_the_position(text, message, line, column):
    with pytest.raises(hytorch.IRSyntaxError) as e:
        hytorch.parse_ir(text)
    assert message in str(e.value)
    assert (e.value.line, e.value.column) == (line, column)
    assert re.search(rf"line {line}, column {column}", str(e.value))


def test_a_form_that_is_not_a_program():
    with pytest.raises(hytorch.IRError, match="def NAME"):
        hytorch.parse_ir("(let x0 1 x0)")


def test_compile_ir_runs_ir_text():
    f = hytorch.compile_ir("(def power3 (in) (begin (begin (let x0 (* in 1) (let x1 (* in x0) "
                           "(let x2 (* in x1) x2))))))")
    assert f(3) == 27
    g = hytorch.compile_ir("(def half (in) (begin (begin (let x0 (/ in 2) x0))))", float)
    assert g(5.0) == 2.5


def test_compile_ir_reports_bad_nodes():
    with pytest.raises(hytorch.IRError, match="unknown IR node `frobnicate`"):
        hytorch.compile_ir("(def f (in) (begin (begin (let x0 (frobnicate in) x0))))")
    with pytest.raises(hytorch.IRError, match="`x9` is used but not bound"):
        hytorch.compile_ir("(def f (in) (begin (begin (let x0 (+ in x9) x0))))")


def test_printf_of_a_symbol_is_not_a_format_string():
    # A symbol is not a string literal, though both are Python strings (found by fuzzing).
    with pytest.raises(hytorch.IRError):
        hytorch.compile_ir("(def f (in) (begin (begin (let x0 (printf (in in)) None))))")


@pytest.mark.parametrize("body", [
    "(let x0 ((<< a) get in) None)",                        # a node whose head is a list
    "(let x0 (print in) (let x1 x0 (let x2 x1 None)))",     # a let of a let of nothing
    # found by helper-29 (TypeError, KeyError, NameError inside the passes):
    "(let x0 (tensor (2 3)) (let x1 (call x0 view (\"a\")) None))",
    "(let x0 (tensor (3)) (let x1 (variable x0 False) (let x3 (SGD (0.1 0.0) 7) None)))",
    "(let x0 (tensor (3)) (let x1 (if in (begin x0) (begin x0)) x1))",
    "(let x0 (new (tensor (4611686018427387904 4) float32)) None)",
    "(let x0 (transform normalize 1) None)",
])
def test_odd_ir_is_an_ir_error_or_compiles(body):
    # Found by fuzzing IR text: these raised TypeError / KeyError inside the renderer.
    text = f"(def f (in) (begin (begin {body})))"
    try:
        f = hytorch.compile_ir(text)
    except hytorch.IRError:
        return
    assert f(1) is None


@pytest.mark.parametrize("node", ['(tensor ("{:01}{:d}" 0 1))', "(tensor 0 0)", "(tensor (2 x1))",
                                  "(tensor (2 3) float64)", "(tensor (2 -1))"])
def test_a_malformed_tensor_node_is_an_ir_error(node):
    # Found by fuzzing IR text: raw TypeErrors from the renderer before.
    with pytest.raises(hytorch.IRError):
        hytorch.compile_ir(f"(def f (in) (begin (begin (let x0 {node} None))))")


@pytest.mark.parametrize("test, kind", [("None", "none"), ("c", "cell"), ("g", "function"),
                                        ('"text"', "str")])
def test_a_while_test_that_is_not_a_number_is_an_ir_error(test, kind):
    # Found by fuzzing IR text: these compiled, and a function's address looped for ever.
    body = (f"(let g (def g (a) (begin a)) (let c new "
            f"(let w (while (begin {test}) (begin None)) 0)))")
    with pytest.raises(hytorch.IRError, match=f"a while's test is a {kind}, not a number"):
        hytorch.compile_ir(f"(def f (in) (begin (begin {body})))")


@pytest.mark.parametrize("alias", ["c", "g", "n"])
def test_a_let_of_a_cell_function_or_none_is_another_name_for_it(alias):
    # Found by fuzzing IR text: a KeyError in the renderer.
    text = ("(def f (in) (begin (begin (let g (def g (a) (begin (let b (+ a 1) b))) (let c new (let n None "
            f"(let y {alias} (let s (set c in) (let r (get c) (let q (call g (r)) q))))))))))")
    assert hytorch.compile_ir(text)(4) == 5
