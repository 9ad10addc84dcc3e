"""IR text fuzzing: random scalar IR programs, and mutations of their text, compiled with
`hytorch.compile_ir` either give an IRError / IRSyntaxError at compile time or run as the
reference evaluator (tests/ir_reference.py) says: same result, same printed bytes, an
ExecutionError where it has a run-time error. Never a C compiler error, a crash or a wrong
value.

    HYTORCH_FUZZ_EXAMPLES=5000 HYTORCH_FUZZ_SEED=random pytest tests/test_fuzz_ir.py
"""
import traceback

from hypothesis import given

import hytorch
from fuzz_harness import (Outcome, bounded_shrinking, compare, fail, fail_c_compile,
                          fuzz_settings, normalize, run_compiled)
from fuzz_ir_programs import ir_cases
from fuzz_programs import BITWISE_OPS
from hytorch.errors import CCompileError, ExecutionError, IRError, IRSyntaxError
from ir_reference import (Exhausted, RefIRError, Reference, RefSyntaxError, Unsupported,
                          read)

# IRErrors a well-formed program may still meet: documented limits of the backend.
_LIMITS = ["nested too deeply", "did not settle", "grew past", "not supported in staged code"]
STATS = {"programs": 0, "mutated": 0, "rejected": 0, "compiled": 0, "no_opinion": 0,
         "calls": 0}


def ir_cases_for_ci():
    return ir_cases(bitwise=BITWISE_OPS)


def reference_for(case):
    """The Reference of the case's program, or the reason it must be rejected."""
    try:
        return Reference(read(case.text), case.kinds), None
    except (RefSyntaxError, RefIRError) as e:
        return None, e


def compile_case(case):
    """The compiled program, or None when the backend rejected it acceptably."""
    try:
        return hytorch.compile_ir(case.text, *case.types)
    except (IRError, IRSyntaxError) as e:
        STATS["rejected"] += 1
        if case.mutated or any(limit in str(e) for limit in _LIMITS):
            return None
        try:
            _, reason = reference_for(case)
        except Unsupported:
            return None
        if reason is None:
            fail(f"ir:rejected-valid:{normalize(e)}",
                 f"{case!r}\nthe backend rejected a well-formed program: {type(e).__name__}: {e}")
        return None
    except CCompileError as e:
        fail_c_compile("ir", repr(case), e)
    except Exception as e:  # noqa: BLE001  (a crash of the backend)
        fail(f"ir:crash:{type(e).__name__}:{normalize(e)}",
             f"{case!r}\ncompile_ir raised {type(e).__name__}: {e}\n{traceback.format_exc()}")


def reference_error_difference(expected, got):
    """For a call where the reference stopped with `expected` (a RefRuntimeError): None when
    the compiled call raised its ExecutionError (a ZeroDivisionError for a division by zero)."""
    if not isinstance(got, ExecutionError):
        return f"no-error:{expected.kind}"
    if expected.kind == "zero-division" and not isinstance(got, ZeroDivisionError):
        return f"other-error:{expected.kind}"
    return None


def check_ir_case(case):
    STATS["programs"] += 1
    STATS["mutated"] += case.mutated
    compiled = compile_case(case)
    if compiled is None:
        return
    STATS["compiled"] += 1
    try:
        reference, reason = reference_for(case)
    except Unsupported:
        STATS["no_opinion"] += 1
        return
    if reason is not None:
        fail(f"ir:accepted-invalid:{normalize(reason)}",
             f"{case!r}\nthe backend compiled a program the reference rejects: {reason}\n"
             f"C source:\n{compiled.c_source}")
    for args in case.argsets:
        try:
            expected = reference.run(args)
        except (Exhausted, Unsupported):
            STATS["no_opinion"] += 1
            continue
        STATS["calls"] += 1
        got = run_compiled(compiled, args)
        signature = compare(expected, got, reference_error_difference)
        if signature:
            shown = Outcome(expected.value, expected.error, expected.output).show()
            fail(f"ir:call:{signature}",
                 f"{case!r}\nargs: {args!r}\nreference: {shown}\ncompiled:  {got.show()}\n"
                 f"C source:\n{compiled.c_source}")


_bounded_check = bounded_shrinking(check_ir_case, key=repr)


@fuzz_settings(default_examples=200)
@given(case=ir_cases_for_ci())
def test_compiled_ir_matches_reference(case):
    _bounded_check(case)


# ------------------------------------------------------------------ what the fuzzer found

RETURNS_A_BOOL = ("(def f (n) (begin (begin (let g (def g (x1 x2) (begin (let x3 (<= x1 0) "
                  "(let x4 (if x3 (begin x2) (begin (let d (- x1 1) (let b (<= x2 0) "
                  "(let a (call g (d b)) a))))) x4)))) (let a (call g (n False)) "
                  "(let p (print a) None))))))")


def test_a_recursive_function_returning_its_bool_parameter_returns_a_bool():
    """Found by this fuzzer: the reference took the result of a recursive call, not known
    yet while typing the function, for an int, and printed 0 where Python prints False."""
    for n, printed in [(0, b"False\n"), (1, b"True\n"), (2, b"False\n")]:
        assert Reference(read(RETURNS_A_BOOL), ["int"]).run([n]).output == printed
        assert run_compiled(hytorch.compile_ir(RETURNS_A_BOOL, int), [n]).output == printed
