"""The RNN section of hytorch.bench: the blog post's RNN (examples/rnn.hy's TestModel, batch 4,
input 16, hidden 32) over lists of 5 to 20 inputs, each list's length known only when it
runs. Milliseconds per forward call and per training step (SGD, mean squared error against
a target, the gradient through the loop), PyTorch eager against HyTorch (and torch.compile,
which compiles once per list length: its warm-up covers every length), on one thread, on the
same sequences in the same order; the losses of the steps are compared with eager's."""
import copy
import random

from hytorch.bench_common import (EAGER, HYTORCH, TORCH_COMPILE, Row, Timing, find_row,
                                  print_table, speedup, threads, time_in_turns,
                                  torch_compile_hy)

BATCH, INPUT, HIDDEN = 4, 16, 32
SHORTEST, LONGEST = 5, 20


def _sequences(count, seed=0):
    import torch
    lengths = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(lengths.randint(SHORTEST, LONGEST), BATCH, INPUT, generator=g),
             torch.rand(BATCH, HIDDEN, generator=g)) for _ in range(count)]


def _models():
    import torch

    from hytorch.examples.rnn import TestModel
    torch.manual_seed(0)
    return TestModel(INPUT, HIDDEN)


def _torch_compiled(model):
    """torch.compile of the model's forward (the Hy function under `defstaged`, whose
    wrapper dynamo cannot read): it compiles once per list length, in the warm-up run."""
    from hytorch.examples import rnn
    forward = type(model).forward.__wrapped__
    return torch_compile_hy(lambda xs: forward(model, xs), rnn)


def train_step(model, opt, inputs, target):
    """One SGD step of the RNN's last hidden state against `target` (staged, the loop over
    `inputs` inside the model's forward is a loop of the compiled code)."""
    import torch.nn.functional as F
    opt.zero_grad()
    loss = F.mse_loss(model(inputs), target)
    loss.backward()
    opt.step()
    return loss.item()


def _stepper(model, staged=False, forward=None):
    """A function (inputs, target) -> loss training `model` with its own SGD: the step
    compiled by HyTorch (`staged`), or run by PyTorch with `forward` (the model, or
    torch.compile's) on the list of inputs."""
    import torch

    import hytorch
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    if staged:
        step = hytorch.stage(train_step, model, opt, hytorch.ListOf(hytorch.TensorType([BATCH, INPUT])),
                             hytorch.TensorType([BATCH, HIDDEN]))
        return lambda xs, y: step(model, opt, xs, y)
    forward = forward or model
    return lambda xs, y: train_step(forward, opt, list(xs), y)


def bench(count, repeats, torch_compile=True):
    """Rows for the forward and the training tables: {"forward": [...], "training": [...]}."""
    import torch

    import hytorch
    data = _sequences(count)
    inputs = hytorch.ListOf(hytorch.TensorType([BATCH, INPUT]))
    rows = {}
    with threads(1):
        model = _models()
        forward = {EAGER: lambda xs: model(list(xs)),
                   HYTORCH: hytorch.stage(model.forward, inputs)}
        if torch_compile:
            compiled = _torch_compiled(model)
            forward[TORCH_COMPILE] = lambda xs: compiled(list(xs))
        def forward_runs(f):
            def run():
                with torch.no_grad():
                    return [torch.as_tensor(f(xs)) for xs, _ in data]
            return lambda: run
        rows["forward"] = time_in_turns([Timing(Row(name, 1), count, forward_runs(f), warm_up=True)
                                         for name, f in forward.items()], repeats)
        reference = rows["forward"][0].result
        for row in rows["forward"]:
            row.check = max(float((a - b).abs().max()) for a, b in zip(row.result, reference))

        step_of = {EAGER: lambda m: _stepper(m), HYTORCH: lambda m: _stepper(m, staged=True)}
        if torch_compile:
            step_of[TORCH_COMPILE] = lambda m: _stepper(m, forward=_torch_compiled(m))
        def training_runs(make):
            def start_run():
                step = make(copy.deepcopy(model))
                return lambda: [step(xs, y) for xs, y in data]
            return start_run
        rows["training"] = time_in_turns([Timing(Row(name, 1), count, training_runs(make),
                                                 warm_up=True)
                                          for name, make in step_of.items()], repeats)
        reference = rows["training"][0].result
        for row in rows["training"]:
            row.check = max(abs(a - b) for a, b in zip(row.result, reference))
    return rows


def main(count, repeats, torch_compile=True):
    rows = bench(count, repeats, torch_compile)
    for what, unit, check in (("forward", "ms/call", "largest output difference from eager"),
                              ("training", "ms/step", "largest loss difference from eager")):
        ours = find_row(rows[what], HYTORCH, 1)
        print(f"\nRNN {what} (the blog post's TestModel, batch {BATCH}, hidden {HIDDEN}, "
              f"{count} lists of {SHORTEST}-{LONGEST} inputs; best and median of {repeats})\n")
        print_table(["contender", "threads", f"{unit} (best)", f"{unit} (median)", check,
                     "HyTorch speed-up"],
                    [[r.name, r.threads, f"{1e3 * r.best:.3f}", f"{1e3 * r.median:.3f}",
                      f"{r.check:.1e}", "" if r is ours else speedup(r, ours)]
                     for r in rows[what]])
