"""Builds survive what happens to their files and programs of any size: a truncated library
or runtime archive is rebuilt, a killed build leaves nothing that lasts; an unusable cache
directory, a compiler that writes nothing or a failing archiver are clear errors; a huge
unrolled function compiles at a level whose time grows linearly."""
import os
import pathlib
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time

import pytest

import hytorch
import hytorch.native
from hytorch import build
from hytorch.build import build_shared

STAGE_SCRIPT = """
import hytorch
f = hytorch.stage(lambda n: n * 5 + 1)
print(f.cached, f(4))
"""


@pytest.fixture(scope="module")
def built_runtime(tmp_path_factory):
    """The runtime archive for the default compiler and flags, built once for this module."""
    seed = tmp_path_factory.mktemp("runtime-seed")
    subprocess.run([sys.executable, "-m", "hytorch.build"], check=True, capture_output=True,
                   env=dict(os.environ, HYTORCH_CACHE=str(seed)))
    (archive,) = seed.glob("runtime-*.a")
    return archive


@pytest.fixture
def cache(tmp_path, monkeypatch, built_runtime):
    """A fresh cache (HYTORCH_CACHE) that already has the runtime archive."""
    directory = tmp_path / "cache"
    directory.mkdir()
    shutil.copy(built_runtime, directory / built_runtime.name)
    monkeypatch.setenv("HYTORCH_CACHE", str(directory))
    return directory


def run_python(script, cache):
    """Run `script` in a new process on `cache` (a truncated library can crash the process
    that loads it, so the loading happens there); its output split into words."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, env=dict(os.environ, HYTORCH_CACHE=str(cache)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split()


def truncate(path, fraction):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    return len(data)


def leftovers(cache):
    return sorted(p.name for p in cache.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("fraction", [0.5, 0.0])
def test_a_truncated_cached_library_is_rebuilt(cache, fraction):
    assert run_python(STAGE_SCRIPT, cache) == ["False", "21"]
    (library,) = cache.glob("model-*.so")
    size = truncate(library, fraction)
    assert run_python(STAGE_SCRIPT, cache) == ["False", "21"], "rebuilt, not loaded as it was"
    assert library.stat().st_size == size
    assert run_python(STAGE_SCRIPT, cache) == ["True", "21"]


def an_object_file(tmp_path):
    """A whole ELF file that dlopen refuses (a relocatable object, not a shared library)."""
    source, obj = tmp_path / "x.c", tmp_path / "x.o"
    source.write_text("int x = 1;\n")
    subprocess.run([*build.compiler_command(), "-c", str(source), "-o", str(obj)], check=True)
    return obj


def test_a_cached_library_that_does_not_load_is_rebuilt(cache, tmp_path):
    assert run_python(STAGE_SCRIPT, cache) == ["False", "21"]
    (library,) = cache.glob("model-*.so")
    shutil.copy(an_object_file(tmp_path), library)
    f = hytorch.stage(lambda n: n * 5 + 1)
    assert not f.cached and f(4) == 21


def test_a_library_that_does_not_load_after_a_rebuild_is_a_clear_error(tmp_path, monkeypatch):
    unloadable, builds = an_object_file(tmp_path), []

    def build_shared(source, extra_flags=(), replace=False):
        builds.append(replace)
        return build.BuildResult(unloadable, not replace, 0.0)

    monkeypatch.setattr(hytorch.native, "build_shared", build_shared)
    with pytest.raises(hytorch.BuildError, match=f"compiled library {unloadable} does not load"):
        hytorch.stage(lambda n: n * 5 + 2)
    assert builds == [False, True], "the cached one is rebuilt once, then it is an error"


def test_a_truncated_runtime_archive_is_rebuilt(cache):
    (archive,) = cache.glob("runtime-*.a")
    size = truncate(archive, 0.5)
    assert hytorch.stage(lambda n: n * 7 + 3)(5) == 38
    assert archive.stat().st_size == size


@pytest.mark.parametrize("kind", ["a file", "under /proc", "an unwritable directory"])
def test_an_unusable_cache_directory_is_a_clear_error(tmp_path, monkeypatch, kind):
    if kind == "a file":
        path = tmp_path / "cache"
        path.write_text("not a directory")
    else:
        path = pathlib.Path("/proc/hytorch-cache" if kind == "under /proc" else "/proc")
    monkeypatch.setenv("HYTORCH_CACHE", str(path))
    with pytest.raises(hytorch.BuildError) as e:
        hytorch.stage(lambda n: n - 11)
    message = str(e.value)
    assert "HYTORCH_CACHE" in message and str(path) in message
    assert "set HYTORCH_CACHE to a writable directory" in message
    reason = "not a directory" if kind == "a file" else "No such file or directory"
    assert reason in message


def test_a_compiler_that_writes_nothing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HYTORCH_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "/bin/true")
    with pytest.raises(hytorch.CompilerNotFound, match="`/bin/true` .* wrote no output"):
        hytorch.stage(lambda n: n + 13)
    assert leftovers(tmp_path) == []


def fake_tools(tmp_path, ar_script):
    """A `cc` that writes a non-empty file wherever -o says, and `ar_script` as `ar` (None: no
    `ar`), alone on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cc = bin_dir / "fake-cc"
    cc.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do if [ "$1" = -o ]; then echo x > "$2"; fi; '
                  'shift; done\n')
    if ar_script is not None:
        (bin_dir / "ar").write_text(ar_script)
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir, cc


@pytest.mark.parametrize("ar", ["fails", "missing"])
def test_archiver_failures_are_clear_errors(tmp_path, monkeypatch, ar):
    script = "#!/bin/sh\necho 'ar: simulated failure' >&2\nexit 3\n" if ar == "fails" else None
    bin_dir, cc = fake_tools(tmp_path, script)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("CC", str(cc))
    monkeypatch.setenv("HYTORCH_CACHE", str(tmp_path / "cache"))
    expected = (hytorch.BuildError, "simulated failure") if ar == "fails" else \
        (hytorch.CompilerNotFound, "`ar`.*binutils")
    with pytest.raises(expected[0], match=expected[1]):
        build_shared("int answer(void) { return 42; }\n")
    assert leftovers(tmp_path / "cache") == []


KILLED_MID_COMPILE = """
import os, signal
import hytorch.build

def killed_mid_compile(cmd, output, *args):
    open(output, "wb").close()  # the compiler has just created its output
    os.kill(os.getpid(), signal.SIGKILL)

hytorch.build._run_compiler = killed_mid_compile
hytorch.build.build_shared("int answer(void) { return 42; }\\n")
"""


def test_a_killed_build_leaves_nothing_that_lasts(cache):
    proc = subprocess.run([sys.executable, "-c", KILLED_MID_COMPILE], capture_output=True,
                          env=dict(os.environ, HYTORCH_CACHE=str(cache)))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert leftovers(cache), "the killed build left its temporary files"
    assert not list(cache.glob("model-*.so"))
    build_shared("int answer(void) { return 43; }\n")
    assert leftovers(cache) == [], "the next build removed them"


def test_old_temporary_files_are_swept_and_young_ones_kept(cache):
    old, young = cache / "model-0.so.abc.tmp", cache / "model-1.so.def.tmp"
    old.write_bytes(b"")
    young.write_bytes(b"")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    build_shared("int answer(void) { return 44; }\n")
    assert leftovers(cache) == [young.name], "a young one may be another process's build"


UNROLLED_ITERATIONS = 10_000


def test_a_huge_unrolled_function_compiles_at_a_lower_optimisation_level(cache):
    def unrolled(n):
        x = n
        for i in range(UNROLLED_ITERATIONS):  # unrolls while staging
            x = x * 3 + i
        return x

    (archive,) = cache.glob("runtime-*.a")
    started = time.perf_counter()
    f = hytorch.stage(unrolled, int)
    seconds = time.perf_counter() - started
    x = 2
    for i in range(UNROLLED_ITERATIONS):
        x = (x * 3 + i + 2**63) % 2**64 - 2**63  # int64 wrap-around, as the C code
    assert f(2) == x
    assert build.largest_function_lines(f.c_source) > build.HUGE_FUNCTION_LINES
    flags = build.model_flags(f.c_source, build.build_flags())
    assert "-O0" in flags and "-O2" not in flags
    assert list(cache.glob("runtime-*.a")) == [archive], "the runtime keeps its own -O2 build"
    print(f"note: {UNROLLED_ITERATIONS} unrolled iterations staged and compiled in {seconds:.1f} s")


def test_normal_programs_keep_the_optimisation_level():
    small = hytorch.stage(lambda n: n * 3 + 1)
    assert build.model_flags(small.c_source, build.build_flags()) == build.build_flags()


def test_the_longest_function_is_measured_in_lines():
    source = ("#include <x.h>\ntypedef struct s {\n  int a;\n} s;\n\n"
              "static int f(void) {\n  int a = 1;\n  if (a) {\n    a++;\n  }\n  return a;\n}\n"
              "int g(void)\n{\n  return 0;\n}\n")
    assert build.largest_function_lines(source) == 5


# ---- the whole-file checks on macOS's formats (built here byte by byte: no Mach-O tools)

def _macho_dylib():
    """A 64-bit Mach-O file whose last segment (__LINKEDIT) ends at byte 5096."""
    def segment(name, fileoff, filesize):
        return (struct.pack("<2I", 0x19, 72) + name.ljust(16, b"\0")
                + struct.pack("<4Q2i2I", 0, 4096, fileoff, filesize, 7, 5, 0, 0))
    commands = segment(b"__TEXT", 0, 4096) + segment(b"__LINKEDIT", 4096, 1000)
    header = struct.pack("<4s2i5I", b"\xcf\xfa\xed\xfe", 0x0100000C, 0, 6, 2, len(commands), 0, 0)
    body = header + commands
    return body + b"\x90" * (5096 - len(body))


def _ar_header(name, size):
    return (name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6) + b"644".ljust(8)
            + str(size).encode().ljust(10) + b"`\n")


def _bsd_archive():
    """An archive as macOS's ar writes it: long names (#1/N) in front of the data, and a
    symbol index `__.SYMDEF SORTED` that is not a member."""
    out = b"!<arch>\n"
    for name, data in [(b"__.SYMDEF SORTED", b"\0" * 24), (b"ht_core.o", b"\x01" * 33),
                       (b"ht_gemm.o", b"\x02" * 40)]:
        padded = name + b"\0" * (-len(name) % 8 or 8)
        member = padded + data
        out += _ar_header(b"#1/%d" % len(padded), len(member)) + member + b"\n" * (len(member) % 2)
    return out


@pytest.mark.parametrize("make, check", [
    (_macho_dylib, lambda path: build._is_whole_library(path)),
    (_bsd_archive, lambda path: build._is_whole_archive(path, 2)),
])
def test_macos_libraries_and_archives_are_whole_unless_cut(tmp_path, make, check):
    data, path = make(), tmp_path / "file"
    path.write_bytes(data)
    assert check(path)
    for cut in range(0, len(data), 7):
        path.write_bytes(data[:cut])
        assert not check(path), f"cut at {cut} of {len(data)} looks whole"


def test_a_bsd_archive_of_another_member_count_is_not_whole(tmp_path):
    path = tmp_path / "runtime.a"
    path.write_bytes(_bsd_archive())
    assert not build._is_whole_archive(path, 3)


def _compiler_refusing(tmp_path, *flags):
    """A $CC that is gcc, except that it refuses `flags` as Apple's clang refuses -march=native."""
    script = tmp_path / "cc-refusing"
    tests = " ".join(f'[ "$a" = "{flag}" ] && exit 1;' for flag in flags)
    script.write_text(f'#!/bin/sh\nfor a in "$@"; do {tests} :; done\nexec {shutil.which("gcc")} "$@"\n')
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize("refused, expected", [
    ((), ("-march=native",)),
    (("-march=native",), ("-mcpu=native",)),          # Apple's clang on arm64
    (("-march=native", "-mcpu=native"), ()),
])
def test_the_native_cpu_flag_is_the_one_the_compiler_takes(tmp_path, monkeypatch, refused, expected):
    cc = _compiler_refusing(tmp_path, *refused)
    flags = build.build_flags(argv=[cc])
    assert [f for f in flags if f.endswith("=native")] == list(expected)
    monkeypatch.setenv("CC", cc)
    monkeypatch.setenv("HYTORCH_CACHE", str(tmp_path / "cache"))
    assert hytorch.stage(lambda n: n * 11 + 1)(3) == 34
