"""Compiling generated C into a shared library, cached by content.

    result = build_shared(c_source)
    result.path      # ~/.cache/hytorch/model-<hash>.so
    result.cached    # True when an earlier build (in any process) already made it

The key is a hash of the C source, the compiler's identity, the flags, the CPU the
`-march=native` code is for, and the runtime's sources. Files are written under a temporary
name and renamed into place, so concurrent builds of the same key are safe.
"""
import concurrent.futures
import functools
import hashlib
import os
import pathlib
import shlex
import shutil
import subprocess
import tempfile
import time

from hytorch.c_runtime import SOURCE_DIR as RUNTIME_DIR
from hytorch.errors import CCompileError, CompilerNotFound

FLAGS = ["-O2", "-march=native", "-fPIC", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-fwrapv"]


class BuildResult:
    def __init__(self, path, cached, seconds, c_path):
        self.path, self.cached, self.seconds, self.c_path = path, cached, seconds, c_path


def cache_dir():
    """$HYTORCH_CACHE, else ~/.cache/hytorch (created on demand)."""
    root = os.environ.get("HYTORCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hytorch")
    path = pathlib.Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def compiler_command():
    """$CC (default `cc`) as an argument list; CompilerNotFound if it is not installed."""
    cc = os.environ.get("CC") or "cc"
    argv = shlex.split(cc)
    if not argv or shutil.which(argv[0]) is None:
        raise CompilerNotFound(
            f"no C compiler: `{cc}` was not found on PATH; install one (Debian: `apt-get install "
            "gcc`) or set $CC to a C compiler")
    return argv


@functools.lru_cache(maxsize=None)
def _compiler_identity(argv):
    try:
        out = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=30)
        version = (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else ""
    except OSError as e:
        raise CompilerNotFound(f"the C compiler `{' '.join(argv)}` could not be run: {e}") from None
    return f"{shutil.which(argv[0])} {version}"


@functools.lru_cache(maxsize=None)
def _cpu_identity():
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return os.uname().machine
    lines = [line for line in text.splitlines() if line.startswith(("model name", "flags"))]
    return os.uname().machine + "\n" + "\n".join(sorted(set(lines)))


def runtime_version():
    """Hash of the C runtime's sources (so a changed runtime rebuilds every model)."""
    h = hashlib.sha256()
    for p in sorted(RUNTIME_DIR.glob("*.[ch]")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _key(*parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(str(part).encode() + b"\0")
    return h.hexdigest()[:32]


def _write_atomically(path, data):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _run_compiler(cmd, c_path, what):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CCompileError(f"the C compiler failed on {what} (exit {proc.returncode}): "
                            f"{' '.join(cmd)}", c_path, proc.stderr.strip())


def runtime_archive(argv, flags):
    """The C runtime compiled with these flags into a static archive, built once."""
    key = _key("runtime", runtime_version(), _compiler_identity(tuple(argv)), flags, _cpu_identity())
    archive = cache_dir() / f"runtime-{key}.a"
    if archive.exists():
        return archive
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="runtime-build-") as tmp:
        sources = sorted(RUNTIME_DIR.glob("*.c"), key=lambda p: -p.stat().st_size)
        objects = [str(pathlib.Path(tmp) / (source.stem + ".o")) for source in sources]
        jobs = [([*argv, *flags, "-I", str(RUNTIME_DIR), "-c", str(source), "-o", obj], str(source),
                 f"the runtime source {source.name}") for source, obj in zip(sources, objects)]
        # One compiler per core, biggest sources first: this build is the slow part of a cold start.
        with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for future in [pool.submit(_run_compiler, *job) for job in jobs]:
                future.result()
        staged_archive = pathlib.Path(tmp) / "runtime.a"
        ar = shutil.which("ar") or "ar"
        subprocess.run([ar, "rcs", str(staged_archive), *objects], check=True, capture_output=True)
        os.replace(staged_archive, archive)
    return archive


def build_shared(c_source, extra_flags=()):
    """Compile `c_source` with the runtime into a cached shared library."""
    start = time.perf_counter()
    argv = compiler_command()
    flags = tuple(FLAGS) + tuple(extra_flags)
    key = _key("model", c_source, _compiler_identity(tuple(argv)), flags, _cpu_identity(),
               runtime_version())
    directory = cache_dir()
    so_path, c_path = directory / f"model-{key}.so", directory / f"model-{key}.c"
    if so_path.exists():
        return BuildResult(so_path, True, time.perf_counter() - start, c_path)
    _write_atomically(c_path, c_source.encode())
    archive = runtime_archive(argv, flags)
    fd, tmp_so = tempfile.mkstemp(dir=directory, prefix=so_path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        _run_compiler([*argv, *flags, "-shared", "-I", str(RUNTIME_DIR), str(c_path), str(archive),
                       "-o", tmp_so, "-lm"], str(c_path), "generated code")
        os.replace(tmp_so, so_path)
    finally:
        if os.path.exists(tmp_so):
            os.unlink(tmp_so)
    return BuildResult(so_path, False, time.perf_counter() - start, c_path)


def main():
    """`python -m hytorch.build`: build the C runtime for this machine now (setup does it
    once, so that the first model staged later compiles only its own code)."""
    started = time.perf_counter()
    archive = runtime_archive(compiler_command(), tuple(FLAGS))
    print(f"C runtime: {archive} ({time.perf_counter() - started:.2f} s)")


if __name__ == "__main__":
    main()
