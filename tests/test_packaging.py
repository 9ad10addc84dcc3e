"""Packaging: one `hytorch` namespace with macros, backend and the C runtime inside; hy2py."""
import os
import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True)
    (path,) = out.glob("hytorch-*.whl")
    return path


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ["hytorch/__init__.py", "hytorch/control.py",
                     "hytorch/macros/defstaged.hy", "hytorch/macros/rewrite.hy",
                     "hytorch/backend/ir.hy", "hytorch/backend/c_render.hy",
                     "hytorch/c_runtime/hytorch_rt.h", "hytorch/c_runtime/ht_core.c",
                     "hytorch/c_runtime/ht_print.c"]:
        assert expected in names
    runtime_sources = {p.name for p in (ROOT / "c_runtime").glob("*.[ch]")}
    assert {n.split("/")[-1] for n in names if n.startswith("hytorch/c_runtime/")} >= runtime_sources
    assert not any(n.startswith(("macros/", "backend/", "c_runtime/", "tests/")) for n in names)


def test_installed_wheel_stages_and_compiles(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, capture_output=True)
    program = tmp_path / "cube.hy"
    program.write_text('(require hytorch [defstaged])\n(import hytorch)\n'
                       '(defstaged cube [n] (* n n n))\n'
                       '(print hytorch.__file__ hytorch.macros.__file__)\n'
                       '(print ((hytorch.stage cube) 3))\n')
    env = dict(os.environ, PYTHONPATH=str(target), HYTORCH_CACHE=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-m", "hy", str(program)], env=env, capture_output=True,
                         text=True, check=True, cwd=tmp_path).stdout.split()
    assert out[0].startswith(str(target)) and out[1].startswith(str(target))
    assert out[2] == "27"


def test_hy2py_shows_the_staged_rewrite():
    hy2py = pathlib.Path(sys.executable).with_name("hy2py")
    out = subprocess.run([str(hy2py), str(ROOT / "examples" / "power.hy")], capture_output=True,
                         text=True, check=True).stdout
    assert "def _staged_count_up(n):" in out
    assert "_hyt.stage_while(" in out
    assert "@_hyt.staged(_staged_count_up" in out
    assert "def count_up(n):" in out and "while x < n:" in out, "the plain defn is there too"
