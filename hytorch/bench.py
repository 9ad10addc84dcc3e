"""Benchmark: PyTorch eager, torch.compile and HyTorch's compiled C side by side in one run,
each measurement repeated, its best and median reported. Five sections (`--only` picks some):

    python -m hytorch.bench                        # all of them
    python -m hytorch.bench --only cnn,call        # the blog's CNN, and the cost of a call
    python -m hytorch.bench --only mlp --limit 6000 --repeats 5 --no-torch-compile

- mlp: the MNIST demo trained from the same initial weights, on the same data in the same
  order: seconds per epoch and the speed-ups for batch 1 (the demo: SGD lr 0.0005) and batch
  64 (lr 0.01, momentum 0.5) on one thread, and at batch 64 on two threads too; then HyTorch's
  arithmetic rate against the single-thread matrix product of the machine (torch.mm).
- compile: the time to stage and compile the demo: with nothing cached, cold (a model never
  compiled before; the C runtime is built once per machine by the setup, `python -m
  hytorch.build`) and from the cache.
- cnn: the blog's CNN, ms per training step at batch 64 and ms per inference at batch 1, at
  one thread and two, with each contender's agreement with eager PyTorch (hytorch.bench_cnn).
- rnn: the blog's RNN over lists of 5 to 20 inputs (their length known only at run time), ms
  per forward call and per training step through the loop (hytorch.bench_rnn).
- call: what calling a compiled function from Python costs beyond its C work
  (hytorch.bench_call).

It first prints the CPU, the vector instructions HyTorch's C runtime was built for and
torch's version. Speed-ups compare best times: on a shared machine the best of several runs is
the closest to what the code costs. The contenders of a table take turns (a run of each, then
again), so that a slow spell of the machine does not fall on one of them only.
"""
import argparse
import copy
import os
import tempfile
import time

import hy  # noqa: F401

from hytorch import bench_call, bench_cnn, bench_rnn
from hytorch.bench_common import (EAGER, HYTORCH, NEVER, TORCH_COMPILE, Row, cpu_model,
                                  print_table, print_table_header, print_table_lines, quiet,
                                  Timing, threads, time_in_turns)

CONFIGS = {1: (0.0005, 0.0), 64: (0.01, 0.5)}
MULTI_THREAD_BATCH, MULTI_THREADS = 64, 2  # the extra row's batch size and thread count
SECTIONS = ("mlp", "compile", "cnn", "rnn", "call")


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


def bench_training(batch_size, epochs, limit, torch_compile, repeats, thread_counts=(1,), seed=1):
    """A Row for each contender (and each of thread_counts), every run from the same start."""
    import torch

    import hytorch
    from hytorch.examples.mnist_mlp import train
    contender = _setup(batch_size, limit, seed)

    def runs(trainer):
        def start_run():
            model, optimizer, loader = contender()
            return lambda: trainer(model, optimizer, loader, epochs, NEVER)
        return start_run

    timings = [Timing(Row(EAGER, n), epochs, runs(train)) for n in thread_counts]

    if torch_compile:
        from hytorch.data import MNIST
        model, optimizer, loader = contender()
        compiled_model = torch.compile(model)
        # Compile (full and short batches) on other images; every timed run restarts from here.
        start = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
        warm = MNIST(train=False, batch_size=batch_size, limit=batch_size + batch_size // 2 + 1)
        with threads(1), quiet():
            train(compiled_model, optimizer, warm, 2, NEVER)

        def compiled_run():
            model.load_state_dict(start[0])
            optimizer.load_state_dict(start[1])
            loader = contender()[2]
            return lambda: train(compiled_model, optimizer, loader, epochs, NEVER)
        timings.append(Timing(Row(TORCH_COMPILE, 1), epochs, compiled_run))

    trainer = hytorch.stage(train, *contender(), int, int)
    timings += [Timing(Row(HYTORCH, n), epochs, runs(trainer)) for n in thread_counts]
    return time_in_turns(timings, repeats)


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
    a, b = torch.rand(size, size), torch.rand(size, size)
    best = float("inf")
    with threads(1):
        torch.mm(a, b)
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
    lines = []
    for batch_size, rows in rows_by_batch.items():
        for row in rows:
            if row.name == HYTORCH:
                rate = epoch_gflop(Net(), samples) / row.best
                lines.append([batch_size, row.threads, f"{rate:.1f}", f"{rate / peak:.0%}"])
    print_table(["batch", "threads", "HyTorch GFLOP/s (best)",
                 f"share of one thread's sgemm (torch.mm: {peak:.0f} GFLOP/s)"], lines)


def mlp_lines(batch_size, rows):
    """Table rows; a contender's speed-up is its best time over HyTorch's at its thread count,
    and HyTorch's on several threads is its best time on one over its own."""
    ours = {row.threads: row.best for row in rows if row.name == HYTORCH}
    lines = []
    for row in rows:
        if row.name != HYTORCH:
            speedup = f"{row.best / ours[row.threads]:.1f}x" if row.threads in ours else ""
        else:
            speedup = "" if row.threads == 1 else f"{ours[1] / row.best:.2f}x its 1-thread speed"
        lines.append([batch_size, row.name, row.threads, f"{row.best:.3f}", f"{row.median:.3f}",
                      f"{row.result:.6f}", speedup])
    return lines


def mlp_section(args):
    print(f"MNIST demo (784-50-10 MLP), Fashion-MNIST, {args.epochs} epoch(s)"
          f"{f' of {args.limit} images' if args.limit else ''}, best and median of {args.repeats} "
          "runs")
    print()
    print_table_header(["batch", "contender", "threads", "s/epoch (best)", "s/epoch (median)",
                        "final loss", "HyTorch speed-up"])
    rows_by_batch = {}
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        thread_counts = (1, MULTI_THREADS) if batch_size == MULTI_THREAD_BATCH else (1,)
        rows_by_batch[batch_size] = bench_training(batch_size, args.epochs, args.limit,
                                                   not args.no_torch_compile, args.repeats,
                                                   thread_counts)
        print_table_lines(mlp_lines(batch_size, rows_by_batch[batch_size]))
    print()
    print_rates(rows_by_batch, args.limit)


def compile_section(args):
    print_table(["staging + C compile of the demo", "seconds"],
                [[label, f"{seconds:.2f}"] for label, seconds in bench_compile().items()])


def cnn_section(args):
    bench_cnn.main(args.cnn_steps, args.cnn_images, args.repeats, not args.no_torch_compile,
                   args.cnn_parts)


def rnn_section(args):
    bench_rnn.main(args.rnn_sequences, args.repeats, not args.no_torch_compile)


def call_section(args):
    bench_call.main(args.calls, args.call_repeats)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"the sections to run, of {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs per measurement of mlp and cnn (at least 3)")
    parser.add_argument("--no-torch-compile", action="store_true")
    mlp = parser.add_argument_group("mlp")
    mlp.add_argument("--epochs", type=int, default=1)
    mlp.add_argument("--limit", type=int, default=None, help="train on the first N images")
    mlp.add_argument("--batch-sizes", default="1,64")
    cnn = parser.add_argument_group("cnn")
    cnn.add_argument("--cnn-steps", type=int, default=20, help="training steps per run")
    cnn.add_argument("--cnn-images", type=int, default=100, help="inferences per run")
    cnn.add_argument("--cnn-parts", default=",".join(bench_cnn.PARTS),
                     help=f"the tables to make, of {','.join(bench_cnn.PARTS)} (default: both)")
    rnn = parser.add_argument_group("rnn")
    rnn.add_argument("--rnn-sequences", type=int, default=100, help="lists per run")
    call = parser.add_argument_group("call")
    call.add_argument("--calls", type=int, default=20000, help="calls per repeat")
    call.add_argument("--call-repeats", type=int, default=7)
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in args.only if name not in SECTIONS]
    if unknown:
        parser.error(f"--only: no section {', '.join(unknown)}; the sections are "
                     f"{', '.join(SECTIONS)}")
    args.cnn_parts = [name.strip() for name in args.cnn_parts.split(",") if name.strip()]
    unknown = [name for name in args.cnn_parts if name not in bench_cnn.PARTS]
    if unknown:
        parser.error(f"--cnn-parts: no part {', '.join(unknown)}; the parts are "
                     f"{', '.join(bench_cnn.PARTS)}")
    if args.repeats < 3:
        parser.error("--repeats must be at least 3: a best and a median of fewer runs say little")
    for name in ("cnn_steps", "cnn_images", "rnn_sequences", "calls", "call_repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


RUN_SECTION = {"mlp": mlp_section, "compile": compile_section, "cnn": cnn_section,
               "rnn": rnn_section, "call": call_section}


def main(argv=None):
    args = parse_args(argv)
    import torch

    from hytorch.machine import vector_isa
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs); HyTorch's C runtime built for "
          f"{vector_isa()}; torch {torch.__version__}")
    for name in SECTIONS:
        if name in args.only:
            print()
            RUN_SECTION[name](args)


if __name__ == "__main__":
    main()
