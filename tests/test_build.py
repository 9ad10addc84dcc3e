"""Building staged C: the content-addressed cache, compiler errors, printing like Python."""
import os
import pathlib
import random
import shutil
import subprocess
import sys
import textwrap

import pytest

import hytorch
from hytorch import build
from hytorch.build import build_shared

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def stage_power3_in_a_new_process(cache):
    script = textwrap.dedent(f"""
        import sys, hy, hytorch
        sys.path.insert(0, {str(EXAMPLES)!r})
        import power
        f = hytorch.stage(power.power3)
        print(f.cached, f(3))
    """)
    env = dict(os.environ, HYTORCH_CACHE=str(cache))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         check=True)
    return out.stdout.split()


def test_a_new_process_reuses_the_cache(tmp_path):
    assert stage_power3_in_a_new_process(tmp_path) == ["False", "27"]
    assert stage_power3_in_a_new_process(tmp_path) == ["True", "27"]
    assert len(list(tmp_path.glob("model-*.so"))) == 1
    assert not list(tmp_path.glob("*.tmp")), "no temporary files are left behind"


def test_compiler_failure_shows_its_message_and_keeps_the_c(tmp_path, monkeypatch):
    monkeypatch.setenv("HYTORCH_CACHE", str(tmp_path))
    with pytest.raises(hytorch.CCompileError) as e:
        build_shared("int broken( {\n")
    assert "error" in e.value.compiler_output
    assert pathlib.Path(e.value.c_path).read_text() == "int broken( {\n"
    assert e.value.c_path in str(e.value)
    assert "expected" in str(e.value)  # gcc's own words


def test_no_c_compiler_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HYTORCH_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "/nonexistent/bin/cc")
    with pytest.raises(hytorch.CompilerNotFound) as e:
        hytorch.stage(lambda n: n + 1)
    message = str(e.value)
    assert "\n" not in message
    assert "/nonexistent/bin/cc" in message and "apt-get install gcc" in message and "$CC" in message


def test_cc_is_honoured(tmp_path, monkeypatch):
    wrapper = tmp_path / "mycc"
    log = tmp_path / "calls"
    wrapper.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\nexec cc \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("HYTORCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(wrapper))
    assert hytorch.stage(lambda n: n * 7)(6) == 42
    assert "-shared" in log.read_text()


def test_floats_print_like_python(capfd):
    show = hytorch.compile_ir("(def show (in) (begin (begin (let x0 (print in) None))))", float)
    rng = random.Random(7)
    values = [0.0, -0.0, 1.0, 0.1, 1e-05, 0.0001, 123456789012345.0, 1e16, 1.5e16, 2.5e-300,
              float("inf"), float("-inf"), float("nan"), 1 / 3, 100.0, 5e-324]
    values += [rng.uniform(-1e6, 1e6) for _ in range(200)]
    values += [rng.random() * 10 ** rng.randint(-30, 30) for _ in range(200)]
    capfd.readouterr()
    for v in values:
        show(v)
    assert capfd.readouterr().out.splitlines() == [repr(v) for v in values]


class CountingStagedSource:
    """A function to stage whose `staged_source` counts how often it is made."""

    def __init__(self):
        self.made = 0

    def __call__(self, n):
        return n * 4 + 1

    @property
    def staged_source(self):
        self.made += 1
        return "def f(n): ..."


def test_staging_makes_the_staged_source_only_when_it_is_read():
    f = CountingStagedSource()
    compiled = hytorch.stage(f)
    assert f.made == 0
    assert compiled.staged_source == "def f(n): ..." and f.made == 1
    assert hytorch.stage(lambda n: n).staged_source is None


def test_staging_a_cached_program_again_reuses_its_declarations():
    first, again = hytorch.stage(lambda n: n + 2), hytorch.stage(lambda n: n + 2)
    assert again.cached and again._ffi is first._ffi
    assert (first(1), again(1)) == (3, 3)


def test_the_runtime_version_follows_the_runtime_sources(tmp_path, monkeypatch):
    runtime = tmp_path / "c_runtime"
    shutil.copytree(build.RUNTIME_DIR, runtime)
    monkeypatch.setattr(build, "RUNTIME_DIR", runtime)
    version = build.runtime_version()
    hits = build._hash_of_sources.cache_info().hits
    assert build.runtime_version() == version
    assert build._hash_of_sources.cache_info().hits == hits + 1, "not read again while unchanged"
    with open(runtime / "ht_core.c", "a") as source:
        source.write("/* changed */\n")
    assert build.runtime_version() != version
