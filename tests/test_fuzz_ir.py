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
from fuzz_harness import (Outcome, bounded_shrinking, fail, fuzz_settings, normalize,
                          run_compiled, same_float, value_category)
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
        first = next((line for line in e.compiler_output.splitlines() if "error" in line), "")
        fail(f"ir:CCompileError:{normalize(first.split('error:')[-1])}",
             f"{case!r}\nthe backend emitted C that does not compile:\n{e}")
    except Exception as e:  # noqa: BLE001  (a crash of the backend)
        fail(f"ir:crash:{type(e).__name__}:{normalize(e)}",
             f"{case!r}\ncompile_ir raised {type(e).__name__}: {e}\n{traceback.format_exc()}")


def compare_run(expected, got):
    """None when the compiled call `got` did what the reference's run `expected` says."""
    if expected.error is not None:
        if not isinstance(got.error, ExecutionError):
            return f"no-error:{expected.error.kind}"
        if expected.error.kind == "zero-division" and not isinstance(got.error, ZeroDivisionError):
            return f"other-error:{expected.error.kind}"
    elif got.error is not None:
        return f"error:{type(got.error).__name__}:{normalize(got.error, 50)}"
    else:
        ce, cg = value_category(expected.value), value_category(got.value)
        if ce != cg:
            return f"result-type:{ce}->{cg}"
        if ce == "float" and not same_float(expected.value, got.value):
            return "result:float"
        if ce in ("int", "bool") and expected.value != got.value:
            return f"result:{ce}"
    if expected.output != got.output:
        return "output"
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
        signature = compare_run(expected, got)
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
