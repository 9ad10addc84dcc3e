"""Packaging: one `hytorch` namespace with macros, backend and the C runtime inside; hy2py."""
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # From a copy of the sources: setuptools' build/ folder keeps files deleted since.
    source = tmp_path_factory.mktemp("source") / "hytorch"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", ".hypothesis", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
                   check=True, capture_output=True)
    (path,) = out.glob("hytorch-*.whl")
    return path


PACKAGE_DIRS = {"hytorch": "hytorch", "hytorch/ir": "hytorch/ir", "hytorch/macros": "macros", "hytorch/backend": "backend",
                "hytorch/c_runtime": "c_runtime", "hytorch/examples": "examples"}
SOURCE_SUFFIXES = {".py", ".hy", ".c", ".h"}


def source_files():
    """Every file the package is made of, by its path inside the wheel."""
    return {f"{package}/{p.name}" for package, folder in PACKAGE_DIRS.items()
            for p in (ROOT / folder).iterdir() if p.suffix in SOURCE_SUFFIXES}


def test_wheel_holds_every_source_file_and_nothing_else(wheel):
    names = {n for n in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in n}
    assert names == source_files()


def test_installed_wheel_works_without_the_source_tree(wheel, tmp_path):
    """The wheel installed on its own: Python starts without `site` (so the editable
    install's finder and .pth files are not loaded), from a folder outside the repository,
    with only the wheel's files and the dependencies on its path; every module imports from
    there, and a function stages and compiles."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, capture_output=True)
    dependencies = next(p for p in map(pathlib.Path, sys.path) if p.name == "site-packages" and
                        (p / "hy").is_dir())
    modules = sorted(n[:-len(pathlib.Path(n).suffix)].replace("/", ".").removesuffix(".__init__")
                     for n in source_files() if n.endswith((".py", ".hy")))
    program = tmp_path / "check.py"
    program.write_text(
        "import importlib, sys\n"
        f"sys.path[:0] = [{str(target)!r}, {str(dependencies)!r}]\n"
        "import hy, hytorch\n"
        f"for name in {modules!r}:\n"
        "    module = importlib.import_module(name)\n"
        f"    assert module.__file__.startswith({str(target)!r}), module.__file__\n"
        "hy.eval(hy.read_many('(require hytorch [defstaged]) (defstaged cube [n] (* n n n))'),"
        " globals())\n"
        "print(hytorch.stage(cube, int)(3))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HYTORCH_CACHE=str(tmp_path / "cache"), PYTHONDONTWRITEBYTECODE="1")
    run = subprocess.run([sys.executable, "-S", "-I", str(program)], env=env, capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["27"]


def test_hy2py_shows_the_staged_rewrite():
    hy2py = pathlib.Path(sys.executable).with_name("hy2py")
    out = subprocess.run([str(hy2py), str(ROOT / "examples" / "power.hy")], capture_output=True,
                         text=True, check=True).stdout
    assert "def _staged_count_up(n):" in out
    assert "_hyt.stage_while(" in out
    assert "@hy.I.hytorch.staged(_staged_count_up" in out
    assert "def count_up(n):" in out and "while x < n:" in out, "the plain defn is there too"
