"""Compiled code under AddressSanitizer and UBSan: every example runs clean with the runtime and
its models built with HYTORCH_SANITIZE, and the arena's red zones turn an overflow from one
temporary into the next (which shares its allocation) into a report."""
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from hytorch.build import build_flags

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUNTIME_DIR = ROOT / "c_runtime"
SANITIZERS = "address,undefined"
ASAN_REPORT, UBSAN_REPORT = "ERROR: AddressSanitizer", "runtime error"

# Each example with settings that keep it brief, and a line of its output that shows it ran.
EXAMPLE_RUNS = [
    ("power.hy", [], "power3(27): eager 19683, compiled 19683"),
    # Batch 1 trains with the rank-1 kernels, the test batch of 200 evaluates with the tiled ones.
    ("mnist_mlp.hy", ["--epochs", "1", "--limit", "200", "--log-interval", "100", "--sections", "run"],
     "Train Epoch: 1 [200/200 (100%)]"),
    # Convolutions (im2col workspaces in the arena), pooling indices and dropout masks.
    ("mnist_cnn.hy", ["--limit", "128", "--log-interval", "1", "--sections", "run"],
     "Train Epoch: 1 [128/128 (100%)]"),
    # The C loader reading the user's arrays.
    ("regression.hy", ["--samples", "200", "--epochs", "2"], "Largest weight difference"),
    # Lists of run-time length, and the tape and replay of the backward pass through the loop.
    ("rnn.hy", ["--steps", "20"], "largest difference of a step's loss from PyTorch's"),
]


def cc():
    return os.environ.get("CC", "cc")


def sanitizer_runtimes():
    """LD_PRELOAD for an uninstrumented Python loading instrumented code: ASan's runtime first."""
    paths = []
    for name in ("libasan.so", "libubsan.so"):
        path = subprocess.run([cc(), f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
        if not os.path.isabs(path):
            pytest.skip(f"the C compiler has no {name}")
        paths.append(path)
    return ":".join(paths)


def sanitizer_env():
    return {"ASAN_OPTIONS": "detect_leaks=0",  # Python leaks by design
            "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}


def assert_no_report(proc):
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert ASAN_REPORT not in proc.stderr, proc.stderr[-4000:]
    assert UBSAN_REPORT not in proc.stderr, proc.stderr[-4000:]


@pytest.fixture(scope="module")
def sanitized_run_env(tmp_path_factory):
    """The environment of a process whose models are built and run under the sanitizers; the
    sanitized runtime archive is built once into a fresh cache first."""
    cache = tmp_path_factory.mktemp("sanitized-cache")
    env = dict(os.environ, HYTORCH_SANITIZE=SANITIZERS, HYTORCH_CACHE=str(cache))
    subprocess.run([sys.executable, "-m", "hytorch.build"], env=env, check=True, capture_output=True)
    return dict(env, LD_PRELOAD=sanitizer_runtimes(), **sanitizer_env())


def test_every_example_is_run():
    assert {name for name, _, _ in EXAMPLE_RUNS} == {p.name for p in (ROOT / "examples").glob("*.hy")}


@pytest.mark.parametrize("example,args,shows", EXAMPLE_RUNS)
def test_example_runs_clean_under_sanitizers(sanitized_run_env, example, args, shows):
    hy = pathlib.Path(sys.executable).with_name("hy")
    proc = subprocess.run([str(hy), str(ROOT / "examples" / example), *args], capture_output=True,
                          text=True, timeout=600, cwd=ROOT, env=sanitized_run_env)
    assert_no_report(proc)
    assert shows in proc.stdout
    models = list(pathlib.Path(sanitized_run_env["HYTORCH_CACHE"]).glob("model-*.so"))
    assert models
    for model in models:
        symbols = subprocess.run(["nm", "-D", str(model)], capture_output=True, text=True).stdout
        assert "__asan_report" in symbols and "__ubsan_handle" in symbols, f"{model} is not instrumented"


# ---- the arena under AddressSanitizer ----

# argv: mode, block size. Two neighbouring temporaries, then one access each mode describes.
ARENA_PROGRAM = textwrap.dedent(r"""
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    #include "ht_kernels.h"

    static void write_bytes(char *p, long from, long to) {
        for (long i = from; i < to; i++) ((volatile char *)p)[i] = 1;
    }

    int main(int argc, char **argv) {
        if (argc != 3) return 2;
        const char *mode = argv[1];
        long size = atol(argv[2]);
        ht_arena a;
        /* Sized as generated code sizes it: the blocks' sizes rounded up to 64. */
        if (ht_arena_init(&a, 2 * ((size + 63) / 64 * 64)) != HT_OK) return 2;
        size_t mark = a.top;
        char *first = ht_arena_alloc(&a, size), *second = ht_arena_alloc(&a, size);
        if (!first || !second) return 3;
        if (!strcmp(mode, "fill")) {          /* correct use: every byte, reset, again */
            write_bytes(first, 0, size);
            write_bytes(second, 0, size);
            a.top = mark;
            char *again = ht_arena_alloc(&a, 2 * size);
            if (!again) return 3;
            write_bytes(again, 0, 2 * size);
        } else if (!strcmp(mode, "overflow")) { /* 64 bytes past the first temporary */
            write_bytes(first, 0, size + 64);
        } else if (!strcmp(mode, "kernel")) {  /* a vectorised kernel, 16 floats too many */
            ht_fill((float *)first, 1.0f, size / 4 + 16);
        } else if (!strcmp(mode, "underflow")) { /* the byte before the second */
            write_bytes(second, -1, 0);
        } else if (!strcmp(mode, "stale")) {   /* a temporary above a restored top */
            a.top = mark;
            if (!ht_arena_alloc(&a, 8)) return 3;
            write_bytes(second, 0, 1);
        } else {
            return 2;
        }
        ht_arena_free(&a);
        puts("done");
        return 0;
    }
""")


@pytest.fixture(scope="module")
def arena_program(tmp_path_factory):
    """ARENA_PROGRAM and the arena's code, built with the flags of a sanitized model."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HYTORCH_SANITIZE", SANITIZERS)
        flags = build_flags()
    directory = tmp_path_factory.mktemp("arena")
    source, program = directory / "arena.c", directory / "arena"
    source.write_text(ARENA_PROGRAM)
    runtime = [str(RUNTIME_DIR / name) for name in ("ht_core.c", "ht_elementwise.c")]
    subprocess.run([cc(), *flags, "-I", str(RUNTIME_DIR), str(source), *runtime, "-o", str(program)],
                   check=True)
    return program


def run_arena(program, mode, size):
    return subprocess.run([str(program), mode, str(size)], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **sanitizer_env()))


@pytest.mark.parametrize("size", [4, 200, 256, 1000])
def test_correct_arena_use_is_clean(arena_program, size):
    proc = run_arena(arena_program, "fill", size)
    assert_no_report(proc)
    assert proc.stdout == "done\n"


@pytest.mark.parametrize("size", [4, 200, 256, 1000])
@pytest.mark.parametrize("mode", ["overflow", "kernel", "underflow", "stale"])
def test_arena_misuse_is_reported(arena_program, mode, size):
    proc = run_arena(arena_program, mode, size)
    assert proc.returncode != 0
    assert f"{ASAN_REPORT}: use-after-poison" in proc.stderr, proc.stderr[-4000:]
    assert "done" not in proc.stdout
