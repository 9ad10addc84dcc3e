"""Differential fuzzing of staging: a random `defstaged` program called eagerly (Python) and
staged and compiled (C) behaves the same: same result, same printed bytes, an error where
Python raises one. Programs come from fuzz_programs.py; a failure shows the program.

    HYTORCH_FUZZ_EXAMPLES=2000 HYTORCH_FUZZ_SEED=random pytest tests/test_fuzz_staging.py
"""
import traceback

from hypothesis import given

import hytorch
from fuzz_harness import (bounded_shrinking, compare, fail, fail_c_compile, fuzz_settings,
                          load_module, normalize, run_compiled, run_eager)
from fuzz_programs import OutOfInt64, cases
from hytorch.errors import CCompileError, StagingError

# Documented StagingErrors a generated program may meet (README "What stages").
_DOCUMENTED = ["does not fit in the 64 bits"]
STATS = {"programs": 0, "calls": 0, "skipped_overflow": 0, "staging_refused": 0}


def _raised_by_program(error, case_file):
    """Whether Python raised `error` in the program's own code while staging it: ordinary
    code runs at generation time, so `(// 1 0)` or `(<< 1 -1)` of constants fails there, in
    a staged branch too (where staging reports it as a StagingError caused by it)."""
    if not isinstance(error, (ArithmeticError, ValueError)):
        return False
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[-1].filename == case_file


def _acceptable_refusal(error, case, case_file, eager):
    """Whether staging may refuse the program with `error`: a StagingError for a format spec
    that staged code does not support (or Python rejects), a documented limit, or a program
    that recurses without end in Python too; an error of the program's own generation-time
    code."""
    if isinstance(error, StagingError):
        return (bool(case.labels & {"unsupported", "invalid"})
                or any(text in str(error) for text in _DOCUMENTED)
                or _raised_by_program(error.__cause__, case_file)
                or any(isinstance(e and e.error, RecursionError) for e in eager))
    if isinstance(error, (ValueError, IndexError, KeyError)) and "invalid" in case.labels:
        return True     # Python's own str.format, on constants, while staging
    return _raised_by_program(error, case_file)


def stage_case(case, fn, case_file, eager):
    """The compiled function, or None when staging refused the program acceptably (`eager`:
    the outcomes of the eager calls)."""
    try:
        return hytorch.stage(fn, *case.types)
    except CCompileError as e:
        fail_c_compile("staging", case.describe(), e)
    except Exception as e:  # noqa: BLE001  (judged below)
        if _acceptable_refusal(e, case, case_file, eager):
            STATS["staging_refused"] += 1
            return None
        message = e.message if isinstance(e, StagingError) else str(e)
        where = "" if isinstance(e, StagingError) else f"\n{traceback.format_exc()}"
        fail(f"staging:{type(e).__name__}:{normalize(message)}",
             f"{case.describe()}\nstaging raised {type(e).__name__}: {e}{where}")
    return None


def check_case(case):
    """The property: eager and compiled calls agree on every argument set."""
    STATS["programs"] += 1
    try:
        module = load_module(case.module_source)
    except Exception as e:  # noqa: BLE001  (the macro or Hy failed on a valid program)
        fail(f"import:{type(e).__name__}:{normalize(str(e).strip())}",
             f"{case.describe()}\nimporting it raised {type(e).__name__}: {e}")
        return
    eager = []
    for args in case.argsets:
        try:
            eager.append(run_eager(module.fuzzed_eager, args))
        except OutOfInt64:
            STATS["skipped_overflow"] += 1
            eager.append(None)
    compiled = stage_case(case, module.fuzzed, module.__file__, eager)
    if compiled is None:
        return
    for args, expected in zip(case.argsets, eager):
        if expected is None:
            continue
        STATS["calls"] += 1
        got = run_compiled(compiled, args)
        signature = compare(expected, got)
        if signature:
            fail(f"call:{signature}",
                 f"{case.describe()}\nargs: {args!r}\neager:    {expected.show()}\n"
                 f"compiled: {got.show()}\nIR: {compiled.ir[:3000]}")


_bounded_check = bounded_shrinking(check_case, key=repr)


@fuzz_settings(default_examples=150)
@given(case=cases())
def test_staged_program_matches_eager_python(case):
    _bounded_check(case)
