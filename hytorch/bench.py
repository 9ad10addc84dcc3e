"""Benchmark: the MNIST demo trained by PyTorch eager, by torch.compile and by HyTorch's
compiled C, side by side in one run, on one thread, from the same initial weights, on the
same data in the same order.

    python -m hytorch.bench                  # batch 1 and batch 64, one epoch each
    python -m hytorch.bench --limit 6000     # a shorter run (epoch = the first 6000 images)
    python -m hytorch.bench --no-torch-compile

It prints seconds per epoch and the speed-ups for batch 1 (the demo: SGD lr 0.0005) and batch
64 (lr 0.01, momentum 0.5), then the time to stage and compile the demo: with nothing cached,
cold (a model never compiled before; the C runtime is built once per machine by the setup,
`python -m hytorch.build`) and from the cache.
"""
import argparse
import contextlib
import copy
import io
import os
import sys
import tempfile
import time

import hy  # noqa: F401

CONFIGS = {1: (0.0005, 0.0), 64: (0.01, 0.5)}
NEVER = 10**9  # a log interval that never logs


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


def bench_training(batch_size, epochs, limit, torch_compile, seed=1):
    """Seconds per epoch and final mean loss for each contender."""
    import torch

    import hytorch
    from hytorch.examples.mnist_mlp import train
    contender = _setup(batch_size, limit, seed)
    results = {}

    model, optimizer, loader = contender()
    results["PyTorch eager"] = _timed(lambda: train(model, optimizer, loader, epochs, NEVER), epochs)

    if torch_compile:
        from hytorch.data import MNIST
        model, optimizer, loader = contender()
        compiled_model = torch.compile(model)
        # Compile (full and short batches) on other images, then restore the start state.
        saved = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
        warm = MNIST(train=False, batch_size=batch_size, limit=batch_size + batch_size // 2 + 1)
        _timed(lambda: train(compiled_model, optimizer, warm, 2, NEVER), 1)
        model.load_state_dict(saved[0])
        optimizer.load_state_dict(saved[1])
        results["torch.compile"] = _timed(
            lambda: train(compiled_model, optimizer, loader, epochs, NEVER), epochs)

    model, optimizer, loader = contender()
    trainer = hytorch.stage(train, model, optimizer, loader, int, int)
    results["HyTorch (C)"] = _timed(lambda: trainer(model, optimizer, loader, epochs, NEVER), epochs)
    return results


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images")
    parser.add_argument("--batch-sizes", default="1,64")
    parser.add_argument("--no-torch-compile", action="store_true")
    args = parser.parse_args(argv)

    import torch
    torch.set_num_threads(1)
    print(f"MNIST demo (784-50-10 MLP), Fashion-MNIST, {args.epochs} epoch(s)"
          f"{f' of {args.limit} images' if args.limit else ''}, 1 thread, torch {torch.__version__}")
    print()
    print("| batch | contender | s/epoch | final loss | HyTorch speed-up |")
    print("| --- | --- | --- | --- | --- |")
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        results = bench_training(batch_size, args.epochs, args.limit, not args.no_torch_compile)
        ours = results["HyTorch (C)"][0]
        for name, (seconds, loss) in results.items():
            speedup = "" if name.startswith("HyTorch") else f"{seconds / ours:.1f}x"
            print(f"| {batch_size} | {name} | {seconds:.3f} | {loss:.6f} | {speedup} |", flush=True)
    print()
    times = bench_compile()
    print("| staging + C compile of the demo | seconds |")
    print("| --- | --- |")
    for label, seconds in times.items():
        print(f"| {label} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
