"""What the sections of hytorch.bench share: the CPU's name, runs with their output silenced,
timed repeats (best and median) of contenders taking turns, thread counts for both libraries,
and Markdown tables."""
import contextlib
import io
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

NEVER = 10**9  # a log interval that never logs

# How long a run's preparation (and the contender timed before it) is left to settle before
# the run is timed. PyTorch's OpenMP threads spin for milliseconds after each parallel region
# (a model's deepcopy at two threads is one), on the cores the timed run then wants: traced on
# a 2-vCPU VM, HyTorch's worker ran none of the first 18 to 37 steps of a two-thread MLP epoch
# while one spun (the caller ran them all, at one thread's speed), and none was lost with
# OMP_WAIT_POLICY=passive or 50 ms after the last parallel region.
SETTLE_SECONDS = 0.1
EAGER, TORCH_COMPILE, HYTORCH = "PyTorch eager", "torch.compile", "HyTorch (C)"  # contenders


def cpu_model():
    """The CPU's model name, as lscpu (else /proc/cpuinfo, else platform) gives it."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@contextlib.contextmanager
def quiet():
    """Silence the training logs, Python's and the compiled code's (which writes to fd 1)."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(io.StringIO()):
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


@contextlib.contextmanager
def threads(n):
    """Let PyTorch and HyTorch's compiled code use `n` threads; both settings are restored."""
    import torch

    import hytorch
    saved = torch.get_num_threads(), hytorch.get_num_threads()
    torch.set_num_threads(n)
    hytorch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        hytorch.set_num_threads(saved[1])


def settle():
    """Wait SETTLE_SECONDS, busy: an idle core came back slower (sleeping instead made the
    MLP's one-thread epoch ~0.7 ms slower, and the RNN's 10 ms runs ~8%)."""
    started = time.perf_counter()
    while time.perf_counter() - started < SETTLE_SECONDS:
        pass


class Row:
    """One contender at one thread count: the seconds of each timed run per unit of work (an
    epoch, a step, a call), what the last run returned (`result`), and what a section found
    when it compared the contender with its reference (`check`, None until then)."""

    def __init__(self, name, threads):
        self.name, self.threads, self.seconds = name, threads, []
        self.result = self.check = None

    def add(self, seconds, result):
        self.seconds.append(seconds)
        self.result = result

    @property
    def best(self):
        return min(self.seconds)

    @property
    def median(self):
        return statistics.median(self.seconds)


class Timing:
    """What time_in_turns times into `row` (a contender at a thread count): runs of `units`
    units of work, each prepared (untimed) by `start_run()` from the start state, which
    returns it: a function of no arguments whose result the row keeps, timed after settle().
    With `warm_up`, one run goes first, untimed."""

    def __init__(self, row, units, start_run, warm_up=False):
        self.row, self.units, self.start_run, self.warm_up = row, units, start_run, warm_up

    def run(self):
        """One run, at the row's thread count: (seconds, result)."""
        with threads(self.row.threads):
            run = self.start_run()
            settle()
            with quiet():
                started = time.perf_counter()
                result = run()
                return time.perf_counter() - started, result


def time_in_turns(timings, repeats):
    """Time `repeats` runs of each of `timings` into its row, taking turns: a run of each in
    order, then again. The slow spells of a shared machine come and go within seconds; taking
    turns spreads them over every contender instead of the one being timed while they last,
    so that ratios of best times compare like with like. Warm-up runs go first. Returns the
    rows."""
    for timing in timings:
        if timing.warm_up:
            timing.run()
    for _ in range(repeats):
        for timing in timings:
            seconds, result = timing.run()
            timing.row.add(seconds / timing.units, result)
    return [timing.row for timing in timings]


def find_row(rows, name, threads):
    """The row of contender `name` at `threads`, or None."""
    return next((r for r in rows if r.name == name and r.threads == threads), None)


def speedup(reference, row):
    """How many times faster `row` is than `reference` (best times), as "2.10x"; "" without
    a reference."""
    return "" if reference is None else f"{reference.best / row.best:.2f}x"


def print_table_header(header):
    """The first two lines of a Markdown table whose column titles are `header`."""
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header), flush=True)


def print_table_lines(lines):
    """Lines of a Markdown table, each a list of cells."""
    for cells in lines:
        print("| " + " | ".join(str(c) for c in cells) + " |")
    sys.stdout.flush()


def print_table(header, lines):
    print_table_header(header)
    print_table_lines(lines)


def torch_compile_hy(f, *hy_modules):
    """torch.compile(f), for code that calls functions written in Hy (in `hy_modules`).
    Dynamo reads the source file of the code it traces as Python, to name functions in its
    logs; a .hy file fails there with an error it does not catch (torch 2.13). An empty entry
    in its cache says "no Python function names here"."""
    import torch
    import torch._dynamo.funcname_cache
    for module in hy_modules:
        torch._dynamo.funcname_cache.cache.setdefault(module.__file__, {})
    return torch.compile(f)
