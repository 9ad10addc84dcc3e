"""Every example runs."""
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run_example(name, *args, timeout=600):
    hy = pathlib.Path(sys.executable).with_name("hy")
    return subprocess.run([str(hy), str(ROOT / "examples" / name), *args], capture_output=True,
                          text=True, check=True, timeout=timeout, cwd=ROOT,
                          env=dict(os.environ)).stdout


def test_power_tour():
    out = run_example("power.hy")
    assert "(def power3 (in) (begin (begin (let x0 (* in 1)" in out
    assert "int64_t v_x2 = (v_in * v_x1);" in out
    assert "power3(27): eager 19683, compiled 19683" in out
    assert "count_up(27): eager 27, compiled 27" in out
    assert "111 steps" in out


def test_mnist_demo_compiled():
    out = run_example("mnist_mlp.hy", "--epochs", "2", "--limit", "6000", "--log-interval", "3000")
    for section in ("ORIGINAL SOURCE", "STAGED SOURCE", "IR CODE", "GENERATED CODE", "EXECUTING CODE"):
        assert section in out
    assert "(defstaged train [model optimizer loader epochs log-interval]" in out
    assert "_hyt.stage_for(" in out
    assert "(def train (in1 in2 in3 in4 in5) (begin (begin (let x0 (tensor (50 784))" in out
    assert "ht_linear_bwd_weight_sgd_fwd(" in out, "the first layer is pipelined"
    assert "Train Epoch: 2 [6000/6000 (100%)]" in out
    accuracy = float(out.split("Test accuracy: ")[1].split("%")[0])
    assert accuracy > 60


def logged_losses_and_accuracy(out):
    losses = [float(line.split("Loss: ")[1]) for line in out.splitlines()
              if line.startswith("Train Epoch") and "Loss: " in line]
    return losses, float(out.split("Test accuracy: ")[1].split("%")[0])


def test_mnist_demo_sections():
    out = run_example("mnist_mlp.hy", "--epochs", "1", "--limit", "2000", "--sections", "ir")
    assert "IR CODE" in out and "GENERATED CODE" not in out and "EXECUTING CODE" not in out


def test_mnist_demo_eager_trains_as_the_compiled_one_does():
    args = ["--epochs", "1", "--limit", "2000", "--log-interval", "500"]
    eager = run_example("mnist_mlp.hy", "--eager", *args)
    compiled = run_example("mnist_mlp.hy", "--sections", "run", *args)
    assert "Train Epoch: 1 [2000/2000 (100%)]" in eager
    eager_losses, eager_accuracy = logged_losses_and_accuracy(eager)
    compiled_losses, compiled_accuracy = logged_losses_and_accuracy(compiled)
    assert len(eager_losses) == len(compiled_losses) == 4
    assert max(abs(a - b) for a, b in zip(eager_losses, compiled_losses)) < 1e-4
    assert eager_losses[-1] < eager_losses[0], "it learns"
    assert abs(eager_accuracy - compiled_accuracy) <= 0.1, "the same test images right, give or take one"


def test_batch_inference_from_python():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "batch_inference.py"), "--limit",
                          "1200", "--batch", "500"], capture_output=True, text=True, check=True,
                         timeout=600, cwd=ROOT).stdout
    assert "compiled for TensorType([500, 1, 28, 28], float32)" in out
    assert "test images: 1200" in out
    agreement = float(out.split("agreement: ")[1].split("%")[0])
    accuracy = float(out.split("compiled accuracy: ")[1].split("%")[0])
    assert agreement >= 99.9 and accuracy > 50


def test_mnist_cnn_trains_compiled_and_eagerly():
    # the blog post's CNN on 640 images (10 steps of 64); dropout's masks differ between the
    # two (torch's generator against the compiled code's), so the losses are close, not equal
    # (tests/test_cnn.hy compares them step by step with dropout off)
    args = ["--limit", "640", "--log-interval", "5"]
    compiled = run_example("mnist_cnn.hy", "--sections", "ir,run", *args)
    eager = run_example("mnist_cnn.hy", "--eager", *args)
    assert "(call conv2d (" in compiled and "(call max_pool2d (" in compiled
    assert "(call dropout (" in compiled
    for out in (compiled, eager):
        assert "Train Epoch: 1 [640/640 (100%)]" in out
        losses, accuracy = logged_losses_and_accuracy(out)
        assert len(losses) == 2 and losses[1] < losses[0] < 2.4, "it learns"
        assert accuracy > 25
    assert abs(logged_losses_and_accuracy(compiled)[0][0] - logged_losses_and_accuracy(eager)[0][0]) < 0.05


def test_regression_on_numpy_data_trains_compiled_as_eagerly():
    out = run_example("regression.hy", "--samples", "500", "--epochs", "4", "--ir")
    assert "(loader (arrays (8) (1) float32 32))" in out
    compiled, eager = ([float(line.split("mean loss ")[1]) for line in part.splitlines()
                        if line.startswith("Epoch ")]
                       for part in out.split("Compiled:")[1].split("Eager PyTorch:"))
    assert len(compiled) == len(eager) == 4
    assert max(abs(a - b) for a, b in zip(compiled, eager)) < 1e-5
    assert compiled[-1] < compiled[0] / 10, "it learns"
    difference = float(out.split("Largest weight difference, compiled vs eager: ")[1].split()[0])
    assert difference < 1e-4


def test_rnn_runs_on_any_length_and_trains_through_the_loop():
    out = run_example("rnn.hy", "--steps", "150")
    assert "(len in)" in out and "(nth in " in out, "the staged loop"
    unrolled = out.split("the loop unrolls at generation time")[1].split("torch.jit.trace")[0]
    assert "while" not in unrolled and unrolled.count("sigmoid") == 3
    for n in (10, 9, 1):
        difference = float(out.split(f"{n:2} inputs: largest difference from PyTorch ")[1].split()[0])
        assert difference < 1e-5
    assert "torch.jit.trace, traced on 10 inputs, on 9: RuntimeError" in out
    assert float(out.split("HyTorch on the same 9 inputs: largest difference from PyTorch ")[1]
                 .split()[0]) < 1e-5
    worst = float(out.split("largest difference of a step's loss from PyTorch's: ")[1].split()[0])
    assert worst < 1e-4
    accuracy = float(out.split("test accuracy on sequences of 10 to 28 rows: ")[1].split("%")[0])
    assert accuracy > 20, "it learns (10% is chance)"
