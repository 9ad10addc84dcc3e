"""Running fuzz cases: settings, failures with signatures, loading generated Hy modules, and
calling them eagerly and compiled (capturing C's stdout at the file descriptor) to compare.

    module = load_module(case.module_source)
    expected = run_eager(module.fuzzed_eager, args)
    got = run_compiled(hytorch.stage(module.fuzzed, *case.types), args)
    compare(expected, got)      # None, or a signature such as "result:float-ulp"
"""
import atexit
import contextlib
import ctypes
import importlib.util
import io
import itertools
import math
import os
import pathlib
import re
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

import hy  # noqa: F401  (imports .hy modules)
from hypothesis import HealthCheck, Phase, seed as hypothesis_seed, settings

from fuzz_programs import CHECK, CheckedInt, OutOfInt64

# ------------------------------------------------------------------ run settings


def fuzz_settings(default_examples):
    """Settings for a fuzz test: deterministic in CI; $HYTORCH_FUZZ_EXAMPLES scales the example
    count and $HYTORCH_FUZZ_SEED (an int, or `random`) explores other programs. Failures are
    reported as found, each distinct one with its whole program; HYTORCH_FUZZ_SHRINK=1 shrinks
    them first (for up to $HYTORCH_FUZZ_SHRINK_SECONDS each, then hypothesis takes a while to
    give up: every candidate is compiled)."""
    examples = int(os.environ.get("HYTORCH_FUZZ_EXAMPLES") or default_examples)
    chosen = os.environ.get("HYTORCH_FUZZ_SEED")
    phases = [p for p in Phase if p != Phase.explain
              and (shrinking_enabled() or p != Phase.shrink)]
    options = settings(max_examples=examples, deadline=None, derandomize=chosen is None,
                       database=None, print_blob=True, phases=phases,
                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                              HealthCheck.data_too_large])

    def apply(test):
        test = options(test)
        if chosen and chosen != "random":
            test = hypothesis_seed(int(chosen))(test)
        return test
    return apply


# ------------------------------------------------------------------ failures


class FuzzFailure(AssertionError):
    """A property violation. `signature` names its kind so that a campaign can tell distinct
    bugs apart; each signature gets its own subclass, so hypothesis shrinks a failure without
    sliding to another bug."""

    signature = "failure"


_FAILURE_CLASSES = {}


def _ignored_signatures():
    path = os.environ.get("HYTORCH_FUZZ_IGNORE")
    if not path or not os.path.exists(path):
        return set()
    return {line.strip() for line in pathlib.Path(path).read_text().splitlines() if line.strip()}


def fail(signature, message):
    """Raise the FuzzFailure of `signature` (unless a campaign listed it in
    $HYTORCH_FUZZ_IGNORE, a file of signatures already reported)."""
    if signature not in _ignored_signatures():
        _raise(signature, f"[{signature}]\n{message}")


def _raise(signature, text):
    cls = _FAILURE_CLASSES.get(signature)
    if cls is None:
        cls = type(f"FuzzFailure[{signature}]", (FuzzFailure,), {"signature": signature})
        _FAILURE_CLASSES[signature] = cls
    raise cls(text)


def normalize(message, limit=90):
    """A message with its numbers, quoted text and locations blurred, for a signature."""
    lines = str(message).strip().splitlines()
    message = re.sub(r"\S+\.hy:\d+:\d+: ", "", lines[0] if lines else "")
    message = re.sub(r"'[^']*'|\"[^\"]*\"|`[^`]*`", "Q", message)
    message = re.sub(r"\d+", "N", message)
    return message[:limit]


def shrinking_enabled():
    return os.environ.get("HYTORCH_FUZZ_SHRINK") == "1"


def bounded_shrinking(check, key, budget=None):
    """`check` as a hypothesis test body. Its failures carry their case (`.case`) and are
    raised the same way each time. When shrinking (HYTORCH_FUZZ_SHRINK=1), it stops `budget`
    seconds ($HYTORCH_FUZZ_SHRINK_SECONDS, default 60) after the first failure: from then on
    a case that failed fails again in the same way (so hypothesis can replay its smallest
    one) and any other case passes without running."""
    if budget is None and shrinking_enabled():
        budget = float(os.environ.get("HYTORCH_FUZZ_SHRINK_SECONDS") or 60)
    failed, deadline = {}, []

    def run(case):
        seen = failed.get(key(case))
        if seen is not None:
            _raise(seen.signature, str(seen))   # raised where it was, for hypothesis
        if deadline and time.monotonic() > deadline[0]:
            return
        try:
            check(case)
        except FuzzFailure as e:
            failed[key(case)] = e
            if budget is not None and not deadline:
                deadline.append(time.monotonic() + budget)
            raise

    def bounded(case):
        try:
            run(case)
        except FuzzFailure as e:
            e.case = case       # for a campaign's own shrinking
            # Hypothesis tells failures apart by where they were raised and what they were
            # raised while handling: the same for a first run and a replay.
            e.__context__ = e.__cause__ = None
            raise
    return bounded


# ------------------------------------------------------------------ running


_module_dir = None
_module_numbers = itertools.count()


def load_module(source):
    """Import Hy `source` as a fresh module from a temporary .hy file."""
    global _module_dir
    if _module_dir is None:
        _module_dir = pathlib.Path(tempfile.mkdtemp(prefix="hytorch_fuzz_"))
        atexit.register(shutil.rmtree, _module_dir, ignore_errors=True)
    name = f"fuzz_case_{os.getpid()}_{next(_module_numbers)}"
    path = _module_dir / f"{name}.hy"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    module.__dict__[CHECK] = CheckedInt
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


@dataclass
class Outcome:
    """What a call did: its value, the exception it raised (or None), and its printed bytes."""
    value: object = None
    error: BaseException = None
    output: bytes = b""

    def show(self):
        what = (f"raised {type(self.error).__name__}: {self.error}" if self.error
                else f"returned {self.value!r}")
        return f"{what}; printed {self.output!r}"


def run_eager(f, args):
    """Call `f` on checked ints; OutOfInt64 propagates (the caller skips that argument set)."""
    args = [CheckedInt(a) if type(a) is int else a for a in args]
    out = io.StringIO()
    outcome = Outcome()
    with contextlib.redirect_stdout(out):
        try:
            outcome.value = f(*args)
        except OutOfInt64:
            raise
        except Exception as e:  # noqa: BLE001  (any exception is an outcome to compare)
            outcome.error = e
    outcome.output = out.getvalue().encode("utf-8")
    return outcome


_libc = ctypes.CDLL(None)


@contextlib.contextmanager
def fd_stdout():
    """Capture what is written to file descriptor 1 (C's stdout): yields a list that holds
    the bytes once the block ends."""
    captured = []
    sys.stdout.flush()
    _libc.fflush(None)
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(1)
        os.dup2(tmp.fileno(), 1)
        try:
            yield captured
        finally:
            _libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read())


class Hang(Exception):
    """A compiled call that ran past the watchdog's time (it was stopped by SIGINT)."""


@contextlib.contextmanager
def watchdog(seconds):
    """Stop compiled code that runs longer than `seconds` the way Ctrl-C does (it polls
    SIGINT in loops); yields a list that holds True if it had to."""
    fired = []
    if threading.current_thread() is not threading.main_thread():
        yield fired
        return

    def stop():
        fired.append(True)
        os.kill(os.getpid(), signal.SIGINT)
    old = signal.signal(signal.SIGINT, lambda *_: None)   # a late signal must not raise
    timer = threading.Timer(seconds, stop)
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, old)


def run_compiled(f, args, timeout=60):
    """Call compiled `f`, capturing C's stdout; a call still running after `timeout` seconds
    is stopped and gives a Hang."""
    outcome = Outcome()
    with fd_stdout() as out, watchdog(timeout) as fired:
        try:
            outcome.value = f(*args)
        except KeyboardInterrupt as e:
            if not fired:
                raise
            outcome.error = Hang(f"still running after {timeout} s ({e})")
        except Exception as e:  # noqa: BLE001
            outcome.error = e
    outcome.output = out[0]
    return outcome


# ------------------------------------------------------------------ comparing


def value_category(v):
    if v is None:
        return "None"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    return type(v).__name__


def same_float(a, b):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return struct.pack("<d", a) == struct.pack("<d", b)


def float_difference(expected, got):
    """A name for how two floats differ (part of a failure's signature)."""
    if math.isnan(expected) != math.isnan(got):
        return "nan"
    if math.isinf(expected) != math.isinf(got):
        return "inf"
    if expected == got:
        return "zero-sign"
    if math.isfinite(expected) and abs(expected - got) <= 4 * math.ulp(expected):
        return "ulp"
    return "value"


def output_difference(expected, got):
    """A name for how two printed outputs differ (part of a failure's signature)."""
    exp_lines, got_lines = expected.split(b"\n"), got.split(b"\n")
    for e, g in zip(exp_lines, got_lines):
        if e != g:
            break
    else:
        return "line-count"
    if b"\0" in e:
        return "nul"
    if b"??" in e:
        return "trigraph"
    if b"nan" in e.lower() or b"nan" in g.lower():
        return "nan"
    if e.replace(b" ", b"").replace(b"0", b"") == g.replace(b" ", b"").replace(b"0", b""):
        return "padding"
    if len(e) == len(g):
        return "digits"
    return "text"


def value_difference(expected, got):
    """None when two results are the same value of the same type, else a signature."""
    ce, cg = value_category(expected), value_category(got)
    if ce != cg:
        return f"result-type:{ce}->{cg}"
    if ce == "float" and not same_float(expected, got):
        return f"result:float-{float_difference(expected, got)}"
    if ce in ("int", "bool") and expected != got:
        return f"result:{ce}"
    return None


def python_error_difference(expected, got):
    """For a call where Python raised `expected`: None when the compiled call raised the same
    type (or an ExecutionError, the C runtime's report of it), else a signature."""
    if got is None:
        return f"no-error:{type(expected).__name__}"
    from hytorch.errors import ExecutionError
    if not isinstance(got, (type(expected), ExecutionError)):
        return f"other-error:{type(expected).__name__}->{type(got).__name__}"
    return None


def compare(expected, got, error_difference=python_error_difference):
    """None when `got` (the compiled call's Outcome) behaves as `expected` (eager Python's, or
    the IR reference's), else a signature. `error_difference(expected_error, got_error)`
    judges a call that should raise."""
    if expected.error is not None:
        signature = error_difference(expected.error, got.error)
        if signature:
            return signature
    elif got.error is not None:
        return f"error:{type(got.error).__name__}:{normalize(got.error, 50)}"
    else:
        signature = value_difference(expected.value, got.value)
        if signature:
            return signature
    if expected.output != got.output:
        return f"output:{output_difference(expected.output, got.output)}"
    return None


def fail_c_compile(prefix, description, error):
    """The failure of generated C that the compiler rejected (a CCompileError)."""
    first = next((line for line in error.compiler_output.splitlines() if "error" in line), "")
    fail(f"{prefix}:CCompileError:{normalize(first.split('error:')[-1])}",
         f"{description}\nthe backend emitted C that does not compile:\n{error}")
