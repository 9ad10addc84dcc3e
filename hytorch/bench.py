"""Benchmark: the MNIST demo trained by PyTorch eager, by torch.compile and by HyTorch's
compiled C, side by side in one run, from the same initial weights, on the same data in the
same order; each measurement repeated, its best and median reported.

    python -m hytorch.bench                  # batch 1 and batch 64, one epoch each, 3 runs
    python -m hytorch.bench --limit 6000     # a shorter run (epoch = the first 6000 images)
    python -m hytorch.bench --repeats 5 --no-torch-compile

It prints the CPU, the vector instructions HyTorch's C runtime was built for and the threads
each contender used, then seconds per epoch and the speed-ups for batch 1 (the demo: SGD lr
0.0005) and batch 64 (lr 0.01, momentum 0.5) on one thread, and at batch 64 on two threads
too; then HyTorch's arithmetic rate against the single-thread matrix product of the machine
(torch.mm); last, the time to stage and compile the demo: with nothing cached, cold (a model
never compiled before; the C runtime is built once per machine by the setup, `python -m
hytorch.build`) and from the cache. Speed-ups compare best times: on a shared machine the
best of several runs is the closest to what the code costs.
"""
import argparse
import contextlib
import copy
import io
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import hy  # noqa: F401

CONFIGS = {1: (0.0005, 0.0), 64: (0.01, 0.5)}
NEVER = 10**9  # a log interval that never logs
HYTORCH = "HyTorch (C)"
MULTI_THREAD_BATCH, MULTI_THREADS = 64, 2  # the extra row's batch size and thread count


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


def _setup(batch_size, limit, seed):
    import torch

    from hytorch.data import MNIST
    from hytorch.examples.mnist_mlp import Net
    lr, momentum = CONFIGS[batch_size]
    torch.manual_seed(seed)
    model = Net()

    def contender():
        m = copy.deepcopy(model)
        return (m, torch.optim.SGD(m.parameters(), lr=lr, momentum=momentum),
                MNIST(train=True, batch_size=batch_size, shuffle=True, seed=seed, limit=limit))
    return contender


@contextlib.contextmanager
def _quiet():
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


def _timed(run, epochs):
    with _quiet():
        started = time.perf_counter()
        loss = run()
        seconds = time.perf_counter() - started
    return seconds / epochs, loss


class Row:
    """One contender at one thread count: seconds per epoch of each run, the final loss."""

    def __init__(self, name, threads):
        self.name, self.threads, self.seconds, self.loss = name, threads, [], None

    def add(self, seconds, loss):
        self.seconds.append(seconds)
        self.loss = loss

    @property
    def best(self):
        return min(self.seconds)

    @property
    def median(self):
        return statistics.median(self.seconds)


def _measure(row, repeats, epochs, start_run):
    """Times `repeats` runs; start_run() prepares a run from the start state and returns it."""
    for _ in range(repeats):
        row.add(*_timed(start_run(), epochs))
    return row


def bench_training(batch_size, epochs, limit, torch_compile, repeats, thread_counts=(1,), seed=1):
    """A Row for each contender (and each of thread_counts), every run from the same start."""
    import torch

    import hytorch
    from hytorch.examples.mnist_mlp import train
    contender = _setup(batch_size, limit, seed)
    rows = []

    def eager_run():
        model, optimizer, loader = contender()
        return lambda: train(model, optimizer, loader, epochs, NEVER)

    for threads in thread_counts:
        torch.set_num_threads(threads)
        rows.append(_measure(Row("PyTorch eager", threads), repeats, epochs, eager_run))
    torch.set_num_threads(1)

    if torch_compile:
        from hytorch.data import MNIST
        model, optimizer, loader = contender()
        compiled_model = torch.compile(model)
        # Compile (full and short batches) on other images; every timed run restarts from here.
        start = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
        warm = MNIST(train=False, batch_size=batch_size, limit=batch_size + batch_size // 2 + 1)
        _timed(lambda: train(compiled_model, optimizer, warm, 2, NEVER), 1)

        def compiled_run():
            model.load_state_dict(start[0])
            optimizer.load_state_dict(start[1])
            loader = contender()[2]
            return lambda: train(compiled_model, optimizer, loader, epochs, NEVER)
        rows.append(_measure(Row("torch.compile", 1), repeats, epochs, compiled_run))

    trainer = hytorch.stage(train, *contender(), int, int)

    def hytorch_run():
        model, optimizer, loader = contender()
        return lambda: trainer(model, optimizer, loader, epochs, NEVER)

    saved = hytorch.get_num_threads()
    try:
        for threads in thread_counts:
            hytorch.set_num_threads(threads)
            rows.append(_measure(Row(HYTORCH, threads), repeats, epochs, hytorch_run))
    finally:
        hytorch.set_num_threads(saved)
    return rows


def bench_compile(seed=1):
    """Seconds to stage and compile the demo with nothing cached, cold (only the C runtime
    cached, as the setup builds it) and cached."""
    import hytorch
    from hytorch.examples.mnist_mlp import train
    contender = _setup(1, 100, seed)
    times = {}
    saved = os.environ.get("HYTORCH_CACHE")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["HYTORCH_CACHE"] = cache
        try:
            for label in ("nothing cached (first use on a machine: builds the C runtime too)",
                          "cold (a model never compiled before; C runtime built at setup)",
                          "cached (the same model again)"):
                if label.startswith("cold"):
                    for model_file in os.listdir(cache):
                        if model_file.startswith("model-"):
                            os.unlink(os.path.join(cache, model_file))
                model, optimizer, loader = contender()
                started = time.perf_counter()
                hytorch.stage(train, model, optimizer, loader, int, int)
                times[label] = time.perf_counter() - started
        finally:
            if saved is None:
                del os.environ["HYTORCH_CACHE"]
            else:
                os.environ["HYTORCH_CACHE"] = saved
    return times


def epoch_gflop(model, samples):
    """The floating-point operations of an epoch of `samples` SGD steps of an MLP of linear
    layers, in GFLOP: each layer's forward product and weight gradient, and the input gradient
    of every layer but the first (a multiply-add is two operations; biases are left out)."""
    import torch
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    multiply_adds = sum(layer.in_features * layer.out_features * (2 if i == 0 else 3)
                        for i, layer in enumerate(layers))
    return 2 * multiply_adds * samples / 1e9


def sgemm_gflops(size=1024, repeats=10):
    """torch.mm's rate on one thread, in GFLOP/s: the best of `repeats` products of two
    size x size float32 matrices (the machine's single-thread matrix-product peak, near
    enough)."""
    import torch
    torch.set_num_threads(1)
    a, b = torch.rand(size, size), torch.rand(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def print_rates(rows_by_batch, limit):
    """HyTorch's GFLOP/s at each batch size and thread count, against sgemm_gflops()."""
    from hytorch.data import MNIST
    from hytorch.examples.mnist_mlp import Net
    peak = sgemm_gflops()
    samples = MNIST(train=True, limit=limit).count
    print(f"| batch | threads | HyTorch GFLOP/s (best) | share of one thread's sgemm "
          f"(torch.mm: {peak:.0f} GFLOP/s) |")
    print("| --- | --- | --- | --- |")
    for batch_size, rows in rows_by_batch.items():
        for row in rows:
            if row.name == HYTORCH:
                rate = epoch_gflop(Net(), samples) / row.best
                print(f"| {batch_size} | {row.threads} | {rate:.1f} | {rate / peak:.0%} |",
                      flush=True)


def print_rows(batch_size, rows):
    """Table rows; a contender's speed-up is its best time over HyTorch's at its thread count,
    and HyTorch's on several threads is its best time on one over its own."""
    ours = {row.threads: row.best for row in rows if row.name == HYTORCH}
    for row in rows:
        if row.name != HYTORCH:
            speedup = f"{row.best / ours[row.threads]:.1f}x" if row.threads in ours else ""
        else:
            speedup = "" if row.threads == 1 else f"{ours[1] / row.best:.2f}x its 1-thread speed"
        print(f"| {batch_size} | {row.name} | {row.threads} | {row.best:.3f} | {row.median:.3f} | "
              f"{row.loss:.6f} | {speedup} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images")
    parser.add_argument("--batch-sizes", default="1,64")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (at least 3)")
    parser.add_argument("--no-torch-compile", action="store_true")
    args = parser.parse_args(argv)
    if args.repeats < 3:
        parser.error("--repeats must be at least 3: a best and a median of fewer runs say little")

    import torch

    from hytorch.machine import vector_isa
    torch.set_num_threads(1)
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs); HyTorch's C runtime built for "
          f"{vector_isa()}; torch {torch.__version__}")
    print(f"MNIST demo (784-50-10 MLP), Fashion-MNIST, {args.epochs} epoch(s)"
          f"{f' of {args.limit} images' if args.limit else ''}, best and median of {args.repeats} "
          "runs")
    print()
    print("| batch | contender | threads | s/epoch (best) | s/epoch (median) | final loss | "
          "HyTorch speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    rows_by_batch = {}
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        threads = (1, MULTI_THREADS) if batch_size == MULTI_THREAD_BATCH else (1,)
        rows_by_batch[batch_size] = bench_training(batch_size, args.epochs, args.limit,
                                                   not args.no_torch_compile, args.repeats,
                                                   threads)
        print_rows(batch_size, rows_by_batch[batch_size])
    print()
    print_rates(rows_by_batch, args.limit)
    print()
    times = bench_compile()
    print("| staging + C compile of the demo | seconds |")
    print("| --- | --- |")
    for label, seconds in times.items():
        print(f"| {label} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
