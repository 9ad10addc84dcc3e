"""A long fuzzing campaign: runs a fuzz property for many examples and goes on past failures,
recording each distinct one (by signature, shrunk for at most $HYTORCH_FUZZ_SHRINK_SECONDS)
with its program; a signature already recorded is not reported again.

    cd tests && nice -n 10 ../.venv/bin/python fuzz_campaign.py staging --examples 5000 \\
        --minutes 80 --out /work/notes/fuzz

writes OUT/TARGET.log (each failure in full), OUT/TARGET.signatures (one a line) and
OUT/TARGET.json (counts). `--seed` makes a campaign repeatable.
"""
import argparse
import json
import os
import pathlib
import random
import signal
import sys
import time
import traceback

from hypothesis import HealthCheck, Phase, given, seed as hypothesis_seed, settings

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from fuzz_harness import FuzzFailure, bounded_shrinking  # noqa: E402
from fuzz_programs import shrink_case  # noqa: E402


class TimeUp(BaseException):
    """Ends a round when the campaign's time is over (not a failure hypothesis would shrink)."""


def target(name):
    """(strategy, check, stats) of a fuzz target."""
    if name == "staging":
        import test_fuzz_staging as t
        from fuzz_programs import cases
        return cases(), t.check_case, t.STATS
    if name == "ir":
        import test_fuzz_ir as t
        return t.ir_cases_for_ci(), t.check_ir_case, t.STATS
    raise SystemExit(f"unknown target {name}; give staging or ir")


def failures_in(error):
    """The exceptions a hypothesis run ended with (several when it found distinct bugs)."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for sub in error.exceptions for leaf in failures_in(sub)]
    return [error]


def signature_function(check):
    def signature_of(case):
        try:
            check(case)
        except FuzzFailure as e:
            return e.signature
        except Exception as e:  # noqa: BLE001
            return f"harness:{type(e).__name__}"
        return None
    return signature_of


def minimal(failure, check, stats, seconds):
    """The failure's message for the smallest program shrink_case finds (not counted as
    programs of the campaign)."""
    programs = stats["programs"]
    try:
        smaller = shrink_case(failure.case, signature_function(check), seconds)
    except Exception as e:  # noqa: BLE001
        return f"--- shrinking failed: {type(e).__name__}: {e}"
    stats["shrink_runs"] = stats.get("shrink_runs", 0) + stats["programs"] - programs
    stats["programs"] = programs
    try:
        check(smaller)
    except FuzzFailure as e:
        return f"--- shrunk by the campaign:\n{e}"
    except Exception as e:  # noqa: BLE001  (a harness error is reported, not fatal)
        return f"--- shrinking stopped on {type(e).__name__}: {e}"
    return "--- (the shrunk program no longer fails: flaky?)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=["staging", "ir"])
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--minutes", type=float, default=80)
    parser.add_argument("--out", default="/work/notes/fuzz")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--shrink-seconds", type=float, default=150,
                        help="time to cut each failing program down (after hypothesis)")
    options = parser.parse_args()

    out = pathlib.Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"{options.target}.log"
    signatures = out / f"{options.target}.signatures"
    signatures.touch()
    os.environ["HYTORCH_FUZZ_IGNORE"] = str(signatures)
    strategy, check, stats = target(options.target)
    rng = random.Random(options.seed)
    end = time.monotonic() + 60 * options.minutes
    started, rounds, found = time.time(), 0, 0

    def timed(case):
        if time.monotonic() > end:
            raise TimeUp()
        check(case)

    def stop(*_):       # SIGTERM ends the campaign as its time would, with its summary
        nonlocal end
        end = 0
    signal.signal(signal.SIGTERM, stop)

    with log.open("a", encoding="utf-8") as log_file:
        log_file.write(f"\n##### campaign {options.target} started {time.ctime()} "
                       f"examples={options.examples} minutes={options.minutes}\n")
        while stats["programs"] < options.examples and time.monotonic() < end:
            rounds += 1
            round_seed = rng.randrange(2**32)
            # The IR target lets hypothesis shrink (its programs compile fast), for a while.
            bounded = bounded_shrinking(timed, key=repr,
                                        budget=options.shrink_seconds if options.target == "ir"
                                        else float("inf"))
            # Hypothesis finds; the staging target's programs are cut down by shrink_case.
            phases = [p for p in Phase if p != Phase.explain
                      and (options.target == "ir" or p != Phase.shrink)]
            test = given(strategy)(settings(
                max_examples=options.examples - stats["programs"], deadline=None, database=None,
                derandomize=False, print_blob=True, phases=phases,
                suppress_health_check=list(HealthCheck))(hypothesis_seed(round_seed)(bounded)))
            try:
                test()
            except TimeUp:
                break
            except BaseException as error:  # noqa: BLE001  (each failure is recorded)
                recorded = set()
                for failure in failures_in(error):
                    signature = getattr(failure, "signature", None) or \
                        f"harness:{type(failure).__name__}:{str(failure)[:60]}"
                    if signature in recorded:
                        continue
                    recorded.add(signature)
                    found += 1
                    body = str(failure) if isinstance(failure, FuzzFailure) else \
                        "".join(traceback.format_exception(failure))
                    if options.target == "staging" and hasattr(failure, "case"):
                        body = minimal(failure, check, stats, options.shrink_seconds) + \
                            "\n--- as found:\n" + body
                    with signatures.open("a") as s:    # not before shrinking: it would pass
                        s.write(signature + "\n")
                    log_file.write(f"\n=== {signature}\n(round {rounds}, seed {round_seed}, "
                                   f"{time.ctime()}, after {stats['programs']} programs)\n{body}\n")
                    log_file.flush()
                    if isinstance(failure, KeyboardInterrupt):
                        raise
            log_file.flush()
        summary = {"target": options.target, "rounds": rounds, "failures": found,
                   "seconds": round(time.time() - started), **stats}
        log_file.write(f"##### campaign ended {time.ctime()}: {json.dumps(summary)}\n")
    (out / f"{options.target}.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
