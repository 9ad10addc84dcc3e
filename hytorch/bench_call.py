"""What calling a compiled function from Python costs beyond its C work (issue 9's target:
under 5 µs for tensor arguments), in hytorch.bench.

Two functions are compiled: `F.relu` of a float32 tensor of 4 elements (4 floats in, 4 out),
staged with `hytorch.TensorType([4])`, and `a * b + 1` of two ints. Each is called `calls`
times in a loop (timeit), `repeats` times over, on one thread; a row gives the median and the
best time per call of:

- the call: the compiled function as users call it, `f(x)` with a torch tensor or a NumPy
  array (the result comes back as a tensor or an array), `f(a, b)` with ints;
- its C entry alone: the compiled program's entry point called through cffi with the same
  arguments converted once beforehand (as the call converted them): the C work plus cffi's
  own foreign call, which no caller from Python avoids;
- beyond the C work: the call's time minus the C entry's, of their medians (which the verdict
  on the target reads) and of their bests (on a shared machine, the closest to what the code
  costs): checking and converting the arguments, making the result and handing it back.

PyTorch eager's `F.relu` of the same tensor is timed too, for scale.
"""
import statistics
import timeit

import hy  # noqa: F401

from hytorch.bench_common import print_table, threads

TARGET_MICROSECONDS = 5.0  # issue 9, for tensor arguments


def relu(x):
    import torch.nn.functional as F
    return F.relu(x)


def multiply_add(a, b):
    return a * b + 1


class _RecordingLibrary:
    """A compiled library that remembers the arguments of the last run of its entry point."""

    def __init__(self, lib):
        self._lib, self.run_args = lib, None

    def __getattr__(self, name):
        return getattr(self._lib, name)

    def ht_run(self, *args):
        self.run_args = args
        return self._lib.ht_run(*args)


class _Arguments(tuple):
    """Recorded C arguments, keeping alive the result they point into (a torch tensor is
    passed by its address)."""
    result = None


def c_entry(compiled, args):
    """(`compiled`'s C entry point, its arguments for `args` as a call converts them: its
    state, the converted arguments, a result buffer): `entry(*entry_args)` runs the call's C
    work without the Python around it. The arguments are recorded from one real call, so that
    they are what the call passes, not a copy of how it makes them. Keep `args` alive while
    the entry is used: a torch tensor is passed by its address."""
    lib = compiled._lib
    compiled._lib = recording = _RecordingLibrary(lib)
    try:
        result = compiled(*args)
    finally:
        compiled._lib = lib
    entry_args = _Arguments(recording.run_args)
    entry_args.result = result
    return lib.ht_run, entry_args


def microseconds_per_call(stmt, namespace, calls, repeats):
    """Each repeat's time per call of `stmt`, in µs."""
    timer = timeit.Timer(stmt, globals=namespace)
    return [1e6 * t / calls for t in timer.repeat(repeat=repeats, number=calls)]


class CallRow:
    """The times per call (µs) of a function with some arguments, of its C entry alone (None:
    not compiled), and whether issue 9's target applies (tensor arguments)."""

    def __init__(self, function, arguments, call, entry=None, targeted=False):
        self.function, self.arguments, self.call, self.entry = function, arguments, call, entry
        self.targeted = targeted

    def beyond_c(self, statistic=statistics.median):
        """The call's time beyond its C entry's, in µs: their medians' difference, or
        another `statistic`'s (min: their bests')."""
        return statistic(self.call) - statistic(self.entry)


def bench_calls(calls, repeats):
    """CallRows for the compiled relu on a torch tensor and on a NumPy array, the compiled
    int function, and PyTorch eager's relu."""
    import numpy as np
    import torch

    import hytorch
    compiled_relu = hytorch.stage(relu, hytorch.TensorType([4]))
    compiled_ints = hytorch.stage(multiply_add, int, int)
    array = np.array([-1.5, 0.5, -0.25, 2.0], dtype=np.float32)
    cases = [("relu of 4 floats, compiled", "torch tensor", compiled_relu,
              (torch.from_numpy(array),)),
             ("relu of 4 floats, compiled", "NumPy array", compiled_relu, (array,)),
             ("a * b + 1, compiled", "two ints", compiled_ints, (6, 7))]
    rows = []
    with threads(1):
        for function, arguments, compiled, args in cases:
            entry, entry_args = c_entry(compiled, args)
            timed = {"f": compiled, "args": args, "entry": entry, "entry_args": entry_args}
            rows.append(CallRow(function, arguments,
                                microseconds_per_call("f(*args)", timed, calls, repeats),
                                microseconds_per_call("entry(*entry_args)", timed, calls,
                                                      repeats),
                                targeted=compiled is compiled_relu))
        eager = {"f": relu, "args": (torch.from_numpy(array),)}
        rows.append(CallRow("relu of 4 floats, PyTorch eager (for scale)", "torch tensor",
                            microseconds_per_call("f(*args)", eager, calls, repeats)))
    return rows


def print_calls(rows, calls, repeats):
    print(f"The cost of a call from Python: {calls} calls per repeat, median and best of "
          f"{repeats} repeats, one thread, in µs per call. C entry: the compiled entry point "
          "called through cffi with the arguments converted once beforehand (the C work and "
          "cffi's call); beyond the C work: the call's time minus the C entry's, of their "
          "medians and of their bests "
          f"(issue 9's target: under {TARGET_MICROSECONDS:.0f} µs for tensor arguments)")
    print()
    lines = []
    for r in rows:
        entry_cells = ["", "", "", ""]
        if r.entry is not None:
            entry_cells = [f"{statistics.median(r.entry):.2f}", f"{min(r.entry):.2f}",
                           f"{r.beyond_c():.2f}", f"{r.beyond_c(min):.2f}"]
        verdict = ""
        if r.targeted:
            verdict = "met" if r.beyond_c() < TARGET_MICROSECONDS else "**missed**"
        lines.append([r.function, r.arguments, f"{statistics.median(r.call):.2f}",
                      f"{min(r.call):.2f}", *entry_cells, verdict])
    print_table(["function", "arguments", "call (median)", "call (best)", "C entry (median)",
                 "C entry (best)", "beyond the C work (medians)", "beyond the C work (bests)",
                 "under 5 µs"], lines)


def main(calls, repeats):
    """The section of hytorch.bench."""
    print_calls(bench_calls(calls, repeats), calls, repeats)
