"""The C-only self-tests, built with the models' flags for this machine, and cross-compiled for
aarch64 (NEON) and run under qemu-user when Debian's gcc-aarch64-linux-gnu,
libc6-dev-arm64-cross and qemu-user are installed (run_aarch64_selftest.sh does the same by
hand): kernel_selftest.c (the vector kernels against naive loops, with NaN and infinities,
fused against unfused, one thread against three) and pool_selftest.c (the thread pool: every
task once, task t on thread t)."""
import os
import pathlib
import shutil
import subprocess

import pytest

from hytorch.build import FLAGS

TESTS = pathlib.Path(__file__).resolve().parent
RUNTIME_DIR = TESTS.parent / "c_runtime"
CROSS_CC, QEMU, CROSS_SYSROOT = "aarch64-linux-gnu-gcc", "qemu-aarch64", "/usr/aarch64-linux-gnu"


def build_selftest(cc, flags, output, test="kernel_selftest.c"):
    sources = sorted(str(p) for p in RUNTIME_DIR.glob("*.c"))
    subprocess.run([cc, *flags, "-Wall", "-Werror", "-I", str(RUNTIME_DIR),
                    str(TESTS / test), *sources, "-o", str(output), "-lm"],
                   check=True, capture_output=True, text=True)
    return output


def run_selftest(command):
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.endswith("selftest ok\n"), run.stdout + run.stderr
    return run.stdout


def test_native_selftest(tmp_path):
    selftest = build_selftest(os.environ.get("CC", "cc"), FLAGS, tmp_path / "selftest")
    run_selftest([str(selftest)])


def test_native_pool_selftest(tmp_path):
    selftest = build_selftest(os.environ.get("CC", "cc"), FLAGS, tmp_path / "pool_selftest",
                              "pool_selftest.c")
    assert run_selftest([str(selftest)]) == "pool selftest ok\n"


CROSS_TOOLS = shutil.which(CROSS_CC) and shutil.which(QEMU) and os.path.isdir(CROSS_SYSROOT)


@pytest.mark.skipif(not CROSS_TOOLS, reason="needs gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user")
def test_aarch64_selftest_under_qemu(tmp_path):
    flags = [flag for flag in FLAGS if not flag.startswith("-march=")]  # the default: armv8-a
    selftest = build_selftest(CROSS_CC, flags, tmp_path / "selftest-aarch64")
    assert "vector ISA: neon\n" in run_selftest([QEMU, "-L", CROSS_SYSROOT, str(selftest)])
    pool = build_selftest(CROSS_CC, flags, tmp_path / "pool-aarch64", "pool_selftest.c")
    run_selftest([QEMU, "-L", CROSS_SYSROOT, str(pool)])
