"""hytorch.bench: the arithmetic of the MLP's rates, and the CNN and call-cost sections run in a
tiny configuration: the tables they print, HyTorch agreeing with eager PyTorch there, and a
contender that loses a gradient or changes an output flagged, not hidden. No timing is
checked: the numbers depend on the machine."""
import contextlib
import io

import hy  # noqa: F401
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from hytorch import bench, bench_call, bench_cnn, get_num_threads
from hytorch.bench import epoch_gflop
from hytorch.bench_common import Row, Timing, time_in_turns
from hytorch.examples.mnist_mlp import Net


def test_contenders_take_turns_at_their_thread_counts():
    """time_in_turns: the warm-up runs first, then a run of each contender in order, again
    and again, each at its row's thread count; each row keeps its runs and last result."""
    log = []

    def runs(name):
        def start_run():
            return lambda: log.append((name, get_num_threads())) or len(log)
        return start_run
    timings = [Timing(Row("a", 1), 2, runs("a"), warm_up=True), Timing(Row("b", 2), 1, runs("b"))]
    rows = time_in_turns(timings, 3)
    assert log == [("a", 1)] + [("a", 1), ("b", 2)] * 3
    assert [len(row.seconds) for row in rows] == [3, 3]
    assert [row.result for row in rows] == [6, 7]
    assert get_num_threads() == 1  # restored


def test_epoch_gflop_counts_what_a_training_step_computes():
    """epoch_gflop agrees with torch's own count of a step's matrix products (forward and
    backward) times the number of samples."""
    torch.manual_seed(0)
    model, samples = Net(), 7
    x, y = torch.rand(samples, 1, 28, 28), torch.randint(0, 10, (samples,))
    with FlopCounterMode(display=False) as counter:
        F.nll_loss(model(x), y).backward()
    assert epoch_gflop(model, samples) * 1e9 == pytest.approx(counter.get_total_flops(), rel=1e-12)


def markdown_tables(text):
    """{first column title: [{column title: cell}, ...]} of each Markdown table in `text`."""
    tables, lines = {}, text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("| ---"):
            header = [c.strip() for c in line.strip("|").split("|")]
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("| "):
                    break
                rows.append(dict(zip(header, (c.strip() for c in row.strip("|").split("|")))))
            tables[" | ".join(header[:3])] = rows
    return tables


def positive(cell):
    return float(cell) > 0


@pytest.fixture(scope="module")
def tiny_run():
    """The output of `python -m hytorch.bench --only cnn,call` in a tiny configuration."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        bench.main(["--only", "cnn,call", "--cnn-steps", "2", "--cnn-images", "3",
                    "--calls", "50", "--call-repeats", "3", "--no-torch-compile"])
    return out.getvalue()


def test_the_cnn_tables_have_each_contender_at_one_thread_and_two(tiny_run):
    tables = markdown_tables(tiny_run)
    training = tables["contender | threads | ms/step (best)"]
    inference = tables["contender | threads | ms/inference (best)"]
    for rows in (training, inference):
        assert [(r["contender"], r["threads"]) for r in rows] == [
            ("PyTorch eager", "1"), ("HyTorch (C)", "1"), ("PyTorch eager", "2"),
            ("HyTorch (C)", "2")]
        for r in rows:
            best, median = [v for k, v in r.items() if k.startswith("ms/")]
            assert positive(best) and float(median) >= float(best)
            assert r["speed-up vs eager"].endswith("x") and r["speed-up vs torch.compile"] == ""
    assert all(r["speed-up vs eager"] == "1.00x"
               for r in training if r["contender"] == "PyTorch eager")


def test_hytorchs_cnn_agrees_with_eager_in_the_tables(tiny_run):
    tables = markdown_tables(tiny_run)
    training = tables["contender | threads | ms/step (best)"]
    inference = tables["contender | threads | ms/inference (best)"]
    for r in training:
        assert r["agrees with eager"] == "yes"
        assert abs(float(r["loss diff vs eager"])) <= bench_cnn.LOSS_TOLERANCE
        difference = r["update difference (worst parameter)"].split(" ")[0]
        assert float(difference) <= bench_cnn.UPDATE_TOLERANCE
        assert 0 < float(r["mean loss (dropout off)"]) < 5
    # eager at one thread is the reference itself, run again
    assert training[0]["loss diff vs eager"] == "+0.0e+00"
    assert training[0]["update difference (worst parameter)"] == "0"
    for r in inference:
        assert r["agrees with eager"] == "yes"
        assert float(r["max abs diff vs eager"]) <= bench_cnn.OUTPUT_TOLERANCE


def test_the_call_table_gives_the_cost_beyond_the_c_work(tiny_run):
    rows = markdown_tables(tiny_run)["function | arguments | call (median)"]
    assert [r["arguments"] for r in rows] == ["torch tensor", "NumPy array", "two ints",
                                              "torch tensor"]
    for r in rows[:3]:
        assert positive(r["call (median)"]) and positive(r["C entry (median)"])
        assert float(r["beyond the C work (medians)"]) == pytest.approx(
            float(r["call (median)"]) - float(r["C entry (median)"]), abs=0.011)
        assert r["beyond the C work (bests)"] != ""
    assert [r["under 5 µs"] != "" for r in rows] == [True, True, False, False]
    assert rows[3]["C entry (median)"] == "" and positive(rows[3]["call (median)"])


def test_the_c_entry_runs_what_the_call_runs():
    """c_entry replays the arguments a real call passed: the same C work, the same result
    (written where the call's result goes, which the recorded call had filled: cleared first)."""
    import hytorch
    f = hytorch.stage(bench_call.relu, hytorch.TensorType([4]))
    x = torch.tensor([-1.0, 2.0, -3.0, 4.0])  # kept: the entry reads it through its address
    entry, entry_args = bench_call.c_entry(f, (x,))
    entry_args[-1][0:4] = [9.0] * 4
    assert entry(*entry_args) == 0 and list(entry_args[-1][0:4]) == [0.0, 2.0, 0.0, 4.0]
    g = hytorch.stage(bench_call.multiply_add, int, int)
    entry, entry_args = bench_call.c_entry(g, (6, 7))
    entry_args[-1][0] = 0
    assert entry(*entry_args) == 0 and entry_args[-1][0] == 43


class LosingStart:
    """A training start whose model's conv1 weight gets zeros for its gradient."""

    def __init__(self, start):
        self.start = start

    def fresh(self):
        model, optimizer, loader = self.start.fresh()
        model.conv1.weight.register_hook(torch.zeros_like)
        return model, optimizer, loader


class LosesConvolutionGradient(bench_cnn.Eager):
    """Eager PyTorch losing conv1's weight gradient: what torch.compile has been seen to do,
    silently."""
    name = "loses conv1's gradient"

    def training(self, start):
        return super().training(LosingStart(start))


class ChangesOutputs(bench_cnn.Eager):
    name = "changes outputs"

    def inference(self, model, example):
        predict = super().inference(model, example)
        return lambda x: predict(x) + 1e-3


def test_a_lost_gradient_is_flagged_as_a_mismatch(capsys):
    rows = bench_cnn.bench_training([bench_cnn.Eager(), LosesConvolutionGradient()], steps=2,
                                    repeats=3, thread_counts=(1,))
    assert rows[0].check.update_difference == 0.0 and rows[0].check.agrees
    assert rows[1].check.update_difference == pytest.approx(1.0)
    assert rows[1].check.worst_parameter == "conv1.weight"
    bench_cnn.print_training(rows, 2, 3)
    table = markdown_tables(capsys.readouterr().out)["contender | threads | ms/step (best)"]
    agreement = [r["agrees with eager"] for r in table]
    assert agreement == ["yes", "**MISMATCH**"]


def test_a_changed_output_is_flagged_as_a_mismatch(capsys):
    rows = bench_cnn.bench_inference([bench_cnn.Eager(), ChangesOutputs()], calls=2, repeats=3,
                                     thread_counts=(1,))
    assert rows[0].check == 0.0 and rows[1].check == pytest.approx(1e-3, rel=1e-2)
    bench_cnn.print_inference(rows, 2, 3)
    table = markdown_tables(capsys.readouterr().out)["contender | threads | ms/inference (best)"]
    agreement = [r["agrees with eager"] for r in table]
    assert agreement == ["yes", "**MISMATCH**"]


def test_only_names_sections():
    assert bench.parse_args(["--only", "cnn,call"]).only == ["cnn", "call"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--only", "cnn,gpu"])


def test_the_rnn_section_times_lists_of_run_time_length_and_agrees_with_eager():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        bench.main(["--only", "rnn", "--rnn-sequences", "3", "--no-torch-compile"])
    tables = markdown_tables(out.getvalue())
    forward = tables["contender | threads | ms/call (best)"]
    training = tables["contender | threads | ms/step (best)"]
    for rows in (forward, training):
        assert [r["contender"] for r in rows] == ["PyTorch eager", "HyTorch (C)"]
        for r in rows:
            best, median = [v for k, v in r.items() if k.startswith("ms/")]
            assert positive(best) and float(median) >= float(best)
            difference = next(v for k, v in r.items() if k.startswith("largest"))
            assert float(difference) < 1e-4
        assert rows[0]["HyTorch speed-up"].endswith("x") and rows[1]["HyTorch speed-up"] == ""
