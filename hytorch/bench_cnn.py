"""The blog's CNN in hytorch.bench: examples/mnist_cnn.hy's Net trained at batch 64 and run
for inference at batch 1 by PyTorch eager, torch.compile and HyTorch, at one thread and at
two, and whether each computes what eager PyTorch computes.

Training: the example's `train` (and its SGD) over `steps` batches of 64 Fashion-MNIST
images, the same batches in the same order for every contender, from the same initial
weights. Each contender runs once untimed (torch.compile compiles then), then `repeats` timed
runs, each from the start: a fresh model (HyTorch copies its weights in and the trained ones
back out, in its time), or for torch.compile its one model set back to the start's weights.
ms per step is a run's time over `steps`. The timed runs keep the blog's dropout, whose masks
HyTorch draws itself, so their losses differ by chance. Agreement is checked by one more run
with dropout off, against eager PyTorch at one thread: its mean loss (within LOSS_TOLERANCE,
issue 8's per-step bound) and its weight updates (the largest difference from eager's update
over the largest eager update, per parameter, within UPDATE_TOLERANCE). A gradient that is
lost (torch.compile has been seen to give zero convolution gradients, silently) shows as an
update difference of 1.0.

Inference: the model in eval mode (dropout off), called on `calls` test images one at a
time (PyTorch under torch.no_grad), after an untimed pass; its outputs are compared with eager
PyTorch's, within OUTPUT_TOLERANCE.

torch.compile's kernels are specialised for the thread count they were compiled at, so it
compiles anew at each thread count.
"""
import math

import hy  # noqa: F401

from hytorch.bench_common import (EAGER, HYTORCH, NEVER, TORCH_COMPILE, Row, Timing, find_row,
                                  print_table, quiet, speedup, threads, time_in_turns,
                                  torch_compile_hy)

BATCH = 64
THREAD_COUNTS = (1, 2)
LOSS_TOLERANCE = 2e-4     # a mean loss's distance from eager's (issue 8's per-step bound)
UPDATE_TOLERANCE = 1e-2   # eager itself at two threads differs by about 4e-4 after 20 steps
OUTPUT_TOLERANCE = 1e-4   # of log-probabilities, which are of order 1
PARTS = ("training", "inference")  # the tables main makes


class Start:
    """Where each training run starts: examples/mnist_cnn.hy's setup for `seed` (the blog's
    Net with PyTorch's initial weights for that seed, SGD as the example, a shuffled loader of
    `steps` batches of 64), with the blog's dropout or with dropout off."""

    def __init__(self, steps, seed=1, dropout=True):
        self.steps, self.seed, self.dropout = steps, seed, dropout

    def fresh(self):
        """A new (model, optimizer, loader) at the start."""
        from hytorch.examples.mnist_cnn import setup
        model, optimizer, loader, _ = setup(None, BATCH, self.seed, self.steps * BATCH)
        if not self.dropout:
            model.dropout1.p = model.dropout2.p = 0.0
        return model, optimizer, loader

    def restart(self, model):
        """`model` set back to the start's weights; a new optimizer of it and a new loader."""
        initial, optimizer, loader = self.fresh()
        model.load_state_dict(initial.state_dict())
        return type(optimizer)(model.parameters(), **optimizer.defaults), loader


def _runs(trainer, start):
    """A function starting a run of `trainer` from a fresh `start`: the run returns the mean
    loss and the trained model."""
    def start_run():
        model, optimizer, loader = start.fresh()
        return lambda: (trainer(model, optimizer, loader, 1, NEVER), model)
    return start_run


def _eager_predictor(model):
    import torch

    def predict(x):
        with torch.no_grad():
            return model(x)
    return predict


class Eager:
    """PyTorch running the example's functions as they are."""
    name = EAGER

    def training(self, start):
        """A function starting a training run from `start` (see _runs)."""
        from hytorch.examples.mnist_cnn import train
        return _runs(train, start)

    def inference(self, model, example):
        """`model` (in eval mode) as a function of a batch like `example`."""
        return _eager_predictor(model)


def _torch_compile(model):
    """torch.compile(model), compiled anew for the current thread count."""
    import torch

    from hytorch.examples import mnist_cnn
    torch._dynamo.reset()
    return torch_compile_hy(model, mnist_cnn)


class TorchCompile:
    """torch.compile of the model; the training loop and the optimizer stay eager."""
    name = TORCH_COMPILE

    def training(self, start):
        from hytorch.examples.mnist_cnn import train
        model = start.fresh()[0]
        compiled = _torch_compile(model)

        def start_run():
            optimizer, loader = start.restart(model)
            return lambda: (train(compiled, optimizer, loader, 1, NEVER), model)
        return start_run

    def inference(self, model, example):
        return _eager_predictor(_torch_compile(model))


def log_probabilities(model, images):
    """The model's output: what inference computes."""
    return model(images)


class HyTorch:
    """The example's `train`, and the model's forward, staged and compiled to C; once for all
    thread counts, which compiled code takes at each call."""
    name = HYTORCH

    def __init__(self):
        self._staged = {}

    def _stage(self, key, f, *arg_types):
        import hytorch
        if key not in self._staged:
            self._staged[key] = hytorch.stage(f, *arg_types)
        return self._staged[key]

    def training(self, start):
        from hytorch.examples.mnist_cnn import train
        return _runs(self._stage(start, train, *start.fresh(), int, int), start)

    def inference(self, model, example):
        import hytorch
        predict = self._stage(model, log_probabilities, model,
                              hytorch.TensorType(example.shape))
        return lambda x: predict(model, x)


def contenders(torch_compile=True):
    return [Eager(), *([TorchCompile()] if torch_compile else []), HyTorch()]


# ---------------------------------------------------------------- training

def _updates(model, initial):
    """Each parameter's change from `initial` (a model at the start), by name."""
    return {name: p.detach() - q.detach()
            for (name, p), q in zip(model.named_parameters(), initial.parameters())}


def update_difference(updates, reference):
    """(the largest difference of `updates` from `reference`, per parameter relative to the
    reference's largest update, and that parameter's name): 0 for the same updates, 1.0 for
    a parameter that did not move."""
    differences = [(float((updates[name] - r).abs().max() / r.abs().max().clamp_min(1e-30)),
                    name) for name, r in reference.items()]
    return max(differences, key=lambda d: (math.isnan(d[0]), d[0]))


class TrainingCheck:
    """A contender's training with dropout off against eager PyTorch's at one thread."""

    def __init__(self, loss, loss_difference, update_difference, worst_parameter):
        self.loss, self.loss_difference = loss, loss_difference
        self.update_difference, self.worst_parameter = update_difference, worst_parameter

    @property
    def agrees(self):
        # written so that a NaN disagrees
        return (abs(self.loss_difference) <= LOSS_TOLERANCE
                and self.update_difference <= UPDATE_TOLERANCE)


def _check_run(contender, start):
    """(mean loss, weight updates) of one quiet training run of `contender` from `start`."""
    run = contender.training(start)()
    with quiet():
        loss, model = run()
    return loss, _updates(model, start.fresh()[0])


def bench_training(contenders, steps, repeats, thread_counts=THREAD_COUNTS, seed=1):
    """A Row of ms per step for each contender at each thread count, its `check` a
    TrainingCheck."""
    timed, checked = Start(steps, seed), Start(steps, seed, dropout=False)
    with threads(1):
        reference_loss, reference_updates = _check_run(Eager(), checked)
    rows = []
    for n in thread_counts:
        with threads(n):
            timed_rows = time_in_turns([Timing(Row(c.name, n), steps, c.training(timed),
                                               warm_up=True) for c in contenders], repeats)
            for contender, row in zip(contenders, timed_rows):
                row.result = row.result[0]  # the last run's mean loss, not its model
                loss, updates = _check_run(contender, checked)
                row.check = TrainingCheck(loss, loss - reference_loss,
                                          *update_difference(updates, reference_updates))
                rows.append(row)
    return rows


def agreement(agrees):
    return "yes" if agrees else "**MISMATCH**"


def _speedups(rows, row):
    return [speedup(find_row(rows, EAGER, row.threads), row),
            speedup(find_row(rows, TORCH_COMPILE, row.threads), row)]


def _update_cell(check):
    if check.update_difference == 0:
        return "0"
    return f"{check.update_difference:.1e} ({check.worst_parameter})"


def optimizer_settings():
    """The example's optimizer, as "SGD lr 0.01, momentum 0.5"."""
    optimizer = Start(1).fresh()[1]
    return (f"{type(optimizer).__name__} lr {optimizer.defaults['lr']}, momentum "
            f"{optimizer.defaults.get('momentum', 0)}")


def print_training(rows, steps, repeats):
    print(f"The blog's CNN (examples/mnist_cnn.hy), training at batch {BATCH} on Fashion-MNIST "
          f"({optimizer_settings()}): {steps} steps per run, best and median of {repeats} "
          "runs after a warm-up run; the timed runs keep the blog's dropout (HyTorch draws "
          "its own masks), the check runs once more with dropout off, against eager at one "
          "thread (update difference: the largest difference of a weight's change from "
          "eager's, over eager's largest change of that parameter)")
    print()
    print_table(["contender", "threads", "ms/step (best)", "ms/step (median)",
                 "mean loss (dropout on)", "mean loss (dropout off)", "loss diff vs eager",
                 "update difference (worst parameter)", "agrees with eager",
                 "speed-up vs eager", "speed-up vs torch.compile"],
                [[r.name, r.threads, f"{1e3 * r.best:.1f}", f"{1e3 * r.median:.1f}",
                  f"{r.result:.6f}", f"{r.check.loss:.6f}", f"{r.check.loss_difference:+.1e}",
                  _update_cell(r.check), agreement(r.check.agrees), *_speedups(rows, r)]
                 for r in rows])


# ---------------------------------------------------------------- inference

def _test_images(count):
    from hytorch.data import MNIST
    return [images for images, _ in MNIST(train=False, batch_size=1, limit=count)]


def _inference_runs(predict, images):
    """A function starting a run of `predict` over `images`, one at a time: the run returns
    the outputs, concatenated."""
    import torch
    return lambda: lambda: torch.cat([predict(x) for x in images])


def bench_inference(contenders, calls, repeats, thread_counts=THREAD_COUNTS, seed=1):
    """A Row of ms per inference at batch 1 for each contender at each thread count, its
    `check` the largest difference of its outputs from eager PyTorch's."""
    import torch
    model = Start(1, seed).fresh()[0].eval()
    images = _test_images(calls)
    with threads(1):
        reference = torch.cat([_eager_predictor(model)(x) for x in images])
    rows = []
    for n in thread_counts:
        with threads(n):
            timings = [Timing(Row(c.name, n), len(images),
                              _inference_runs(c.inference(model, images[0]), images), warm_up=True)
                       for c in contenders]
            for row in time_in_turns(timings, repeats):
                row.check = float((row.result - reference).abs().max())
                rows.append(row)
    return rows


def print_inference(rows, calls, repeats):
    print(f"The blog's CNN, inference at batch 1 (eval mode: dropout off): {calls} test images "
          f"one at a time per run, best and median of {repeats} runs after a warm-up run; "
          "outputs (log-probabilities) against eager at one thread")
    print()
    print_table(["contender", "threads", "ms/inference (best)", "ms/inference (median)",
                 "max abs diff vs eager", "agrees with eager", "speed-up vs eager",
                 "speed-up vs torch.compile"],
                [[r.name, r.threads, f"{1e3 * r.best:.3f}", f"{1e3 * r.median:.3f}",
                  f"{r.check:.1e}", agreement(r.check <= OUTPUT_TOLERANCE), *_speedups(rows, r)]
                 for r in rows])


def main(steps, calls, repeats, torch_compile=True, parts=PARTS):
    """The section of hytorch.bench: the tables of `parts` (both by default)."""
    if "training" in parts:
        print_training(bench_training(contenders(torch_compile), steps, repeats), steps, repeats)
    if "inference" in parts:
        if "training" in parts:
            print()
        print_inference(bench_inference(contenders(torch_compile), calls, repeats), calls,
                        repeats)
