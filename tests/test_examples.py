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
    assert "int64_t x2 = (in * x1);" in out
    assert "eager (power3 3) etc.: 19683   compiled: 19683" in out
    assert "111 steps" in out
