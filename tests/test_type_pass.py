"""Type inference as a pass (backend/infer.hy): each cell's kind is the join of what is set
into it, each staged function's the join of its calls and its body's result, found once
before rendering and written into the program the renderer renders (`.rendered_ir`)."""
import hy  # noqa: F401
import pytest
from hypothesis import given, settings, strategies as st

import hytorch
from hytorch.backend.infer import infer
from hytorch.ir.syntax import parse_ir, print_ir
from hytorch.ir.types import ListType, TensorType


def typed(text, kinds=("int",)):
    return print_ir(infer(parse_ir(text), list(kinds)).program)


def test_a_cell_takes_the_join_of_what_is_set_into_it():
    text = "(def f (in) (begin (begin (let c new (let a (set c 1) (let b (set c 0.5) (let r (get c) r)))))))"
    assert "(let c (new float)" in typed(text)
    never_set = "(def f (in) (begin (begin (let c new (let r (get c) r)))))"
    assert "(let c (new int)" in typed(never_set)


def test_a_cell_set_after_it_is_read_is_typed_before_the_read():
    # the read comes first in the program; its kind is the cell's, known from the later set
    text = ("(def f (in) (begin (begin (let c new (let a (set c 0) (let w (while (begin (let t (get c) "
            "(let u (< t 3) u))) (begin (let t (get c) (let u (+ t 0.5) (let s (set c u) None))))) "
            "(let r (get c) r)))))))")
    assert "(let c (new float)" in typed(text)
    assert hytorch.compile_ir(text, int)(0) == 3.0


def test_a_tensor_cell_records_its_type_and_whether_it_needs_gradients():
    text = ("(def f (in) (begin (begin (let w (tensor (2 3)) (let v (variable w False) "
            "(let c new (let a (set c v) (let r (get c) None))))))))")
    assert "(let c (new (tensor (2 3) float32 grad))" in typed(text)


def test_staged_functions_widen_to_their_calls():
    text = ("(def f (in) (begin (begin (let g (def g (x) (begin (let y (* x 2) y))) "
            "(let a (call g (1)) (let b (call g (0.5)) (let r (+ a b) r)))))))")
    typing = infer(parse_ir(text), ["int"])
    assert typing.functions == {"g": (["float"], "float")}
    assert hytorch.compile_ir(text, int)(0) == 3.0


def test_the_typed_program_is_a_fixed_point_and_a_typed_new_is_read_back():
    text = "(def f (in) (begin (begin (let c new (let a (set c in) (let r (get c) r))))))"
    once = typed(text, ["float"])
    assert typed(once, ["float"]) == once
    assert "(new float)" in once
    # a typed new is where its cell's kind starts
    widened = "(def f (in) (begin (begin (let c (new float) (let a (set c in) (let r (get c) r))))))"
    assert hytorch.compile_ir(widened, int)(2) == 2.0


def test_a_malformed_typed_new_is_a_clear_error():
    with pytest.raises(hytorch.IRError, match="a cell's kind is int, float, bool or"):
        hytorch.compile_ir("(def f (in) (begin (begin (let c (new str) (let r (get c) r)))))", int)


def test_kinds_that_do_not_join_are_reported_by_the_pass():
    text = ("(def f (in) (begin (begin (let w (tensor (2)) (let c new (let a (set c 1) "
            "(let b (set c w) (let r (get c) r))))))))")
    with pytest.raises(hytorch.IRError, match="a cell holds a tensor and a number"):
        hytorch.compile_ir(text, int)


# Random programs: a cell set to numbers of random kinds, some inside staged ifs; what the
# compiled program returns is what Python computes, widened to the join of the kinds.
literal = st.one_of(st.integers(-5, 5), st.floats(-4, 4, allow_nan=False).map(lambda x: round(x, 2)),
                    st.booleans())


@settings(max_examples=40, deadline=None, derandomize=True)
@given(sets=st.lists(st.tuples(literal, st.sampled_from(["always", "then", "else"])), min_size=1, max_size=5))
def test_random_sets_type_and_run_as_python_does(sets):
    lets, value = [], None
    for i, (x, where) in enumerate(sets):
        setter = f"(set c {print_ir(x)})"
        if where == "always":
            lets.append(f"(let s{i} {setter}")
        else:
            branch = f"(begin (let t{i} {setter} None))"
            nothing = "(begin None)"
            then, other = (branch, nothing) if where == "then" else (nothing, branch)
            lets.append(f"(let s{i} (if p {then} {other})")
    text = (f"(def f (in) (begin (begin (let p (> in 0) (let c new {' '.join(lets)} "
            f"(let r (get c) r){')' * len(lets)})))))")
    compiled = hytorch.compile_ir(text, int)
    for arg in (1, -1):
        value, kinds = 0, set()
        for x, where in sets:
            kinds.add(type(x).__name__)
            if where == "always" or (where == "then") == (arg > 0):
                value = x
        result = compiled(arg)
        assert result == value
        assert isinstance(result, float) == ("float" in kinds)


def chain(lets, result):
    """IR text of right-nested lets [(name, rhs)] ending in `result`."""
    return "".join(f"(let {n} {r} " for n, r in lets) + result + ")" * len(lets)


def test_kinds_widen_back_through_a_long_chain_of_cells():
    """Each cell is set, in a loop, from the next one, read before that one is set: every
    round of the walk widens one more (four rounds of re-rendering gave up at the fifth)."""
    n = 12
    body = chain([(f"g{i}", f"(get c{i})") for i in range(1, n)]
                 + [(f"s{i}", f"(set c{i} g{i + 1})") for i in range(n - 1)], "None")
    top = chain([(f"c{i}", "new") for i in range(n)]
                + [("last", f"(set c{n - 1} 0.5)"),
                   ("w", f"(while (begin (let t (< in 2) t)) (begin {body}))"),
                   ("r", "(get c0)")], "r")
    text = f"(def f (in) (begin (begin {top})))"
    assert all(f"(let c{i} (new float)" in typed(text) for i in range(n))
