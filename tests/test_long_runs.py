"""Long runs behave: Ctrl-C stops compiled training at the next step and keeps the weights;
the runtime and a generated model run clean under AddressSanitizer and UBSan."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import hy  # noqa: F401  (imports the .hy examples)
import numpy as np
import pytest
import torch

import hytorch
from hytorch.examples.mnist_mlp import demo_setup, train

SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]


def interrupt_once_trained(live):
    """Send this process SIGINT once the array `live` (a parameter's memory, which the
    compiled call trains in place) holds something else than before: a step has trained it.
    Waiting for that, not for a time, makes the test independent of the machine's speed."""
    before = live.copy()

    def watch():
        while np.array_equal(live, before):
            time.sleep(0.001)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()


def test_ctrl_c_stops_training_and_keeps_the_weights():
    model, optimizer, loader, _ = demo_setup(None, 1, 1)
    trainer = hytorch.stage(train, model, optimizer, loader, int, int)
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    versions = {name: p._version for name, p in model.named_parameters()}
    interrupt_once_trained(model.fc1.weight.detach().numpy())
    with pytest.raises(KeyboardInterrupt, match="interrupted"):
        trainer(model, optimizer, loader, 100, 60000)  # ~6 million steps: stopped long before
    for name, p in model.named_parameters():
        assert not torch.equal(initial[name], p), f"{name}: the steps trained so far are kept"
        assert p._version > versions[name], f"{name}: counted as changed in place"
    # The program is in a sound state: training goes on from the kept weights.
    loss = trainer(model, optimizer, loader, 1, 60000)
    assert loss < 0.6


def _sanitizer_runtime():
    libs = []
    for name in ("libasan.so", "libubsan.so"):
        path = subprocess.run([os.environ.get("CC", "cc"), f"-print-file-name={name}"],
                              capture_output=True, text=True).stdout.strip()
        assert os.path.isabs(path), f"the C compiler has no {name}"
        libs.append(path)
    return ":".join(libs)


def test_training_under_address_and_undefined_behaviour_sanitizers(tmp_path):
    script = textwrap.dedent(f"""
        import subprocess, hy, torch
        from hytorch.api import lms_compile
        from hytorch.native import compile_program
        from hytorch.data import MNIST
        from hytorch.examples.mnist_mlp import Net, train, accuracy
        for batch, lr, momentum in [(1, 0.0005, 0.0), (7, 0.01, 0.5)]:
            torch.manual_seed(0)
            model = Net()
            optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
            loader = MNIST(batch_size=batch, shuffle=True, limit=300)
            trainer = compile_program(lms_compile(train, model, optimizer, loader, int, int), {SANITIZE!r})
            symbols = subprocess.run(["nm", "-D", str(trainer.so_path)], capture_output=True, text=True).stdout
            assert "__asan_report" in symbols and "__ubsan_handle" in symbols
            print("loss", trainer(model, optimizer, loader, 2, 1000))
            test = MNIST(train=False, batch_size=64, limit=200)
            evaluate = compile_program(lms_compile(accuracy, model, test), {SANITIZE!r})
            print("accuracy", evaluate(model, test))
    """)
    env = dict(os.environ, LD_PRELOAD=_sanitizer_runtime(), ASAN_OPTIONS="detect_leaks=0",
               UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1", HYTORCH_CACHE=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ERROR: AddressSanitizer" not in proc.stderr
    assert "runtime error" not in proc.stderr
    steps = [line for line in proc.stdout.splitlines() if line.startswith("loss")]
    assert len(steps) == 2 and all(float(s.split()[1]) < 2.3 for s in steps)
