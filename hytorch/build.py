"""Compiling generated C into a shared library, cached by content.

    result = build_shared(c_source)
    result.path      # ~/.cache/hytorch/model-<hash>.so
    result.cached    # True when an earlier build (in any process) already made it

The key is a hash of the C source, the compiler's identity, the flags, the CPU the
`-march=native` code is for, and the runtime's sources. Each build works in its own temporary
directory inside the cache and renames its result into place, so concurrent builds of the same
key are safe, and what a killed build leaves is removed by a later one. A cached library or
runtime archive that is not whole (cut short by a crash or a full disk while it was copied) is
rebuilt.
"""
import concurrent.futures
import contextlib
import functools
import hashlib
import os
import pathlib
import shlex
import shutil
import socket
import struct
import subprocess
import tempfile
import time

from hytorch.c_runtime import SOURCE_DIR as RUNTIME_DIR
from hytorch.errors import BuildError, CCompileError, CompilerNotFound

# -march=native: the runtime's kernels are written once with vector extensions and take the
# widest vector unit the CPU has (AVX-512, AVX2, NEON, ...; see c_runtime/ht_vec.h). -O2, not
# -O3: the kernels are vectorised and register-blocked by hand, -O3 (with link-time
# optimisation, too) made them no faster, and it compiles slower. No -ffast-math: NaN and
# infinities behave as in torch.
# -pthread: the matrix products run on the runtime's worker threads (ht_machine.c).
FLAGS = ["-O2", "-march=native", "-fPIC", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-fwrapv",
         "-pthread"]

# gcc's optimisers take time superlinear in a function's length. Python loops unrolled while
# staging make functions of tens of thousands of lines: at -O2, 24,000 lines of unrolled
# branches took 30 s and 20,000 of integer arithmetic 7 s (-O1: 4-23 s); at -O0 a 10,000-line
# function takes about a second and time grows linearly. Their work is scalar glue (the
# kernels are in the runtime archive, always at -O2), so a program with a function longer than
# this is compiled at -O0.
HUGE_FUNCTION_LINES = 3000
HUGE_FUNCTION_OPTIMIZATION = "-O0"

# A build directory whose process is gone, or older than this, was abandoned (a killed build).
ABANDONED_AFTER_SECONDS = 3600


def sanitizer_flags():
    """Flags for the sanitizers named in $HYTORCH_SANITIZE (e.g. `address,undefined`), added to
    the runtime's and every model's build (and so to their cache keys); none when it is unset.
    The first report stops the process. A process loading such a model must have the
    sanitizers' runtimes first, e.g. LD_PRELOAD="$(gcc -print-file-name=libasan.so)"."""
    kinds = os.environ.get("HYTORCH_SANITIZE", "").strip()
    if not kinds:
        return ()
    return (f"-fsanitize={kinds}", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g1")


def build_flags(extra_flags=(), argv=None):
    """FLAGS (-march=native as the compiler `argv`, default $CC, spells it), then
    $HYTORCH_SANITIZE's, then `extra_flags`."""
    native = native_cpu_flags(tuple(argv or compiler_command()))
    flags = [f for flag in FLAGS for f in (native if flag == "-march=native" else (flag,))]
    return tuple(flags) + sanitizer_flags() + tuple(extra_flags)


@functools.lru_cache(maxsize=None)
def native_cpu_flags(argv):
    """How the compiler `argv` is told to target this CPU: gcc and clang take -march=native
    on x86-64 and Linux aarch64, Apple's clang on arm64 only -mcpu=native. A compiler that
    takes neither builds the portable kernels (correct, slower).

        >>> native_cpu_flags(("gcc",))
        ('-march=native',)
    """
    for flag in ("-march=native", "-mcpu=native"):
        try:
            probe = subprocess.run([*argv, flag, "-x", "c", "-c", "-o", os.devnull, "-"],
                                   input="int ht_probe;\n", capture_output=True, text=True,
                                   timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return ()
        if probe.returncode == 0:
            return (flag,)
    return ()


def largest_function_lines(c_source):
    """The length in lines of the longest top-level block of generated C (a function: it
    opens on an unindented line ending in `{` and closes at the next unindented `}`)."""
    longest, start = 0, None
    for number, line in enumerate(c_source.splitlines()):
        if line[:1] in ("", " ", "\t", "#"):
            continue
        if line.startswith("}"):
            if start is not None:
                longest = max(longest, number - start - 1)
            start = None
        elif line.endswith("{"):
            start = number
    return longest


def model_flags(c_source, flags):
    """`flags` for compiling `c_source`: at HUGE_FUNCTION_OPTIMIZATION instead of their
    optimisation level when it has a function longer than HUGE_FUNCTION_LINES."""
    if largest_function_lines(c_source) <= HUGE_FUNCTION_LINES:
        return tuple(flags)
    return tuple(HUGE_FUNCTION_OPTIMIZATION if flag.startswith("-O") else flag for flag in flags)


class BuildResult:
    def __init__(self, path, cached, seconds, c_path=None):
        self.path, self.cached, self.seconds, self.c_path = path, cached, seconds, c_path


# ---- the cache directory

def _cache_root():
    return pathlib.Path(os.environ.get("HYTORCH_CACHE")
                        or os.path.join(os.path.expanduser("~"), ".cache", "hytorch"))


def _unwritable_cache(directory, error):
    if directory.is_file():
        reason = "it is a file, not a directory"
    else:
        reason = error.strerror or str(error)
        if error.filename and str(error.filename) != str(directory):
            reason += f" ({error.filename})"
    where = "" if os.environ.get("HYTORCH_CACHE") else ", the default when it is unset"
    return BuildError(f"the cache directory {directory} (HYTORCH_CACHE{where}) cannot be "
                      f"written: {reason}; set HYTORCH_CACHE to a writable directory")


@contextlib.contextmanager
def _writing_to_cache(directory):
    """Turn an OSError of a write into the cache into an error that says how to fix it."""
    try:
        yield
    except OSError as e:
        raise _unwritable_cache(directory, e) from None


def cache_dir():
    """$HYTORCH_CACHE, else ~/.cache/hytorch (created on demand)."""
    path = _cache_root()
    with _writing_to_cache(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


def _move_into_cache(source, target):
    with _writing_to_cache(target.parent):
        os.replace(source, target)


_BUILD_PREFIX = "build-"
_LEFTOVERS = ("*.tmp", "runtime-build-*")  # build directories; earlier versions' temporaries


def _build_directory_name():
    """`build-PID@HOST@` (mkdtemp adds a random part): who may still be using it."""
    return f"{_BUILD_PREFIX}{os.getpid()}@{socket.gethostname()}@"


def _process_is_gone(name):
    """Whether the name says the directory is this host's and its process has ended."""
    if not name.startswith(_BUILD_PREFIX) or name.count("@") < 2:
        return False
    pid, host, _ = name[len(_BUILD_PREFIX):].split("@", 2)
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass  # it exists (as another user's process)
    return False


def _remove_abandoned_builds(directory):
    """Remove what killed builds left in the cache (another process's build in progress is
    kept: it is young and its process is alive)."""
    now = time.time()
    for pattern in _LEFTOVERS:
        for path in directory.glob(pattern):
            try:
                old = now - path.lstat().st_mtime > ABANDONED_AFTER_SECONDS
            except OSError:
                continue  # removed meanwhile
            if old or _process_is_gone(path.name):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        path.unlink()


@contextlib.contextmanager
def _build_directory(directory):
    """A private directory inside the cache for one build's files, removed afterwards."""
    _remove_abandoned_builds(directory)
    with _writing_to_cache(directory):
        path = pathlib.Path(tempfile.mkdtemp(dir=directory, prefix=_build_directory_name(),
                                             suffix=".tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---- what the key is made of

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
    """Hash of the C runtime's sources (so a changed runtime rebuilds every model); read and
    hashed again only when a source's size or modification time changes."""
    stamps = []
    for path in sorted(RUNTIME_DIR.glob("*.[ch]")):
        stat = path.stat()
        stamps.append((path, stat.st_mtime_ns, stat.st_size))
    return _hash_of_sources(tuple(stamps))


@functools.lru_cache(maxsize=16)
def _hash_of_sources(stamps):
    h = hashlib.sha256()
    for path, _, _ in stamps:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _key(*parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(str(part).encode() + b"\0")
    return h.hexdigest()[:32]


# ---- is a cached file whole?

# Per ELF class: the struct code of an address, where e_phoff and e_phentsize are in the file
# header, and where p_offset and p_filesz are in a program header.
_ELF_LAYOUTS = {1: ("I", 28, 42, 4, 16), 2: ("Q", 32, 54, 8, 32)}
_MACHO_64 = b"\xcf\xfa\xed\xfe"     # MH_MAGIC_64, little-endian (arm64 and x86-64 macOS)
_LC_SEGMENT_64 = 0x19


def _is_whole_library(path):
    """Whether `path` is a shared library (ELF, or Mach-O on macOS) holding every byte its
    headers point to. Loading a truncated library can kill the process (SIGBUS), so it is
    checked before it is loaded."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            header = f.read(64)
            if header[:4] == b"\x7fELF":
                return _elf_end(f, header) <= size
            if header[:4] == _MACHO_64:
                return _macho_end(f, header) <= size
            return False
    except (OSError, struct.error, ValueError):
        return False


def _elf_end(f, header):
    """Where the last byte an ELF file's headers point to ends."""
    if len(header) < 52 or header[4] not in _ELF_LAYOUTS:
        raise ValueError("not an ELF file of a known class")
    word, phoff_at, phentsize_at, offset_at, filesz_at = _ELF_LAYOUTS[header[4]]
    order = "<" if header[5] == 1 else ">"
    phoff, shoff = struct.unpack_from(order + word * 2, header, phoff_at)
    phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "4H", header, phentsize_at)
    ends = [phoff + phnum * phentsize, shoff + shnum * shentsize]
    f.seek(phoff)
    table = f.read(phnum * phentsize)
    if len(table) < phnum * phentsize:
        raise ValueError("truncated program headers")
    for i in range(phnum):
        offset, = struct.unpack_from(order + word, table, i * phentsize + offset_at)
        filesz, = struct.unpack_from(order + word, table, i * phentsize + filesz_at)
        ends.append(offset + filesz)
    return max(ends)


def _macho_end(f, header):
    """Where the last byte a 64-bit Mach-O file's segments hold ends (the code signature and
    symbol tables are inside __LINKEDIT)."""
    ncmds, sizeofcmds = struct.unpack_from("<2I", header, 16)
    f.seek(32)
    commands = f.read(sizeofcmds)
    if len(commands) < sizeofcmds:
        raise ValueError("truncated load commands")
    end, at = 32 + sizeofcmds, 0
    for _ in range(ncmds):
        cmd, cmdsize = struct.unpack_from("<2I", commands, at)
        if cmdsize < 8:
            raise ValueError("malformed load command")
        if cmd == _LC_SEGMENT_64:
            fileoff, filesize = struct.unpack_from("<2Q", commands, at + 40)
            end = max(end, fileoff + filesize)
        at += cmdsize
    return end


_ARCHIVE_INDEXES = {b"/", b"//", b"/SYM64/", b"__.SYMDEF", b"__.SYMDEF SORTED",
                    b"__.SYMDEF_64", b"__.SYMDEF_64 SORTED"}


def _is_whole_archive(path, members):
    """Whether `path` is an `ar` archive (GNU, or BSD as macOS writes it) of `members` whole
    object files. A truncated one can link without an error into a library that does not
    load, so it is checked first."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if f.read(8) != b"!<arch>\n":
                return False
            offset, count = 8, 0
            while offset < size:
                f.seek(offset)
                header = f.read(60)
                if len(header) < 60 or header[58:60] != b"`\n":
                    return False
                length = int(header[48:58])
                name = header[:16].rstrip()
                if name.startswith(b"#1/"):      # BSD: the name is the data's first bytes
                    name = f.read(int(name[3:])).rstrip(b"\0")
                count += name not in _ARCHIVE_INDEXES
                offset += 60 + length + length % 2
            return offset == size and count == members
    except (OSError, ValueError):
        return False


# ---- building

def _run_compiler(cmd, output, c_path, what):
    """Run the compiler `cmd`, which must write `output`."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise CompilerNotFound(f"the C compiler `{cmd[0]}` could not be run: {e}") from None
    if proc.returncode != 0:
        raise CCompileError(f"the C compiler failed on {what} (exit {proc.returncode}): "
                            f"{' '.join(map(str, cmd))}", c_path, proc.stderr.strip())
    if not os.path.isfile(output) or os.path.getsize(output) == 0:
        raise CompilerNotFound(f"the C compiler `{cmd[0]}` succeeded on {what} but wrote no "
                               f"output ({output}): $CC must name a C compiler such as gcc")


def _archive(objects, output):
    ar = shutil.which("ar")
    if ar is None:
        raise CompilerNotFound("no archiver: `ar` was not found on PATH; install binutils "
                               "(Debian: `apt-get install binutils`)")
    cmd = [ar, "rcs", str(output), *map(str, objects)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not os.path.isfile(output):
        raise BuildError(f"the archiver failed on the C runtime's objects (exit "
                         f"{proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}")


def runtime_archive(argv, flags, replace=False):
    """The C runtime compiled with these flags into a static archive, built once (again when
    `replace`, or when the cached one is not whole)."""
    start = time.perf_counter()
    key = _key("runtime", runtime_version(), _compiler_identity(tuple(argv)), flags, _cpu_identity())
    directory = cache_dir()
    archive = directory / f"runtime-{key}.a"
    sources = sorted(RUNTIME_DIR.glob("*.c"), key=lambda p: -p.stat().st_size)
    if not replace and _is_whole_archive(archive, len(sources)):
        return BuildResult(archive, True, time.perf_counter() - start)
    with _build_directory(directory) as tmp:
        objects = [tmp / (source.stem + ".o") for source in sources]
        jobs = [([*argv, *flags, "-I", str(RUNTIME_DIR), "-c", str(source), "-o", str(obj)], obj,
                 str(source), f"the runtime source {source.name}")
                for source, obj in zip(sources, objects)]
        # One compiler per core, biggest sources first: this build is the slow part of a cold start.
        with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for future in [pool.submit(_run_compiler, *job) for job in jobs]:
                future.result()
        _archive(objects, tmp / archive.name)
        _move_into_cache(tmp / archive.name, archive)
    return BuildResult(archive, False, time.perf_counter() - start)


def _link(argv, flags, runtime_flags, obj, output, c_path):
    """Link the model's object with the runtime archive into `output`. The linker rejecting a
    cached archive (damaged in a way it did not show) rebuilds the archive, once."""
    archive = runtime_archive(argv, runtime_flags)
    while True:
        try:
            _run_compiler([*argv, *flags, "-shared", str(obj), str(archive.path), "-o", str(output),
                           "-lm"], output, c_path, "linking generated code with the runtime")
            return
        except CCompileError:
            if not archive.cached:
                raise
            archive = runtime_archive(argv, runtime_flags, replace=True)


def build_shared(c_source, extra_flags=(), replace=False):
    """Compile `c_source` with the runtime into a cached shared library; `replace` rebuilds
    it even when the cache has it (say, because it did not load)."""
    start = time.perf_counter()
    argv = compiler_command()
    runtime_flags = build_flags(extra_flags, argv)
    flags = model_flags(c_source, runtime_flags)
    key = _key("model", c_source, _compiler_identity(tuple(argv)), flags, _cpu_identity(),
               runtime_version())
    directory = cache_dir()
    so_path, c_path = directory / f"model-{key}.so", directory / f"model-{key}.c"
    if not replace and _is_whole_library(so_path):
        return BuildResult(so_path, True, time.perf_counter() - start, c_path)
    with _build_directory(directory) as tmp:
        with _writing_to_cache(directory):
            (tmp / c_path.name).write_bytes(c_source.encode())
        _move_into_cache(tmp / c_path.name, c_path)  # kept: compiler errors point into it
        obj = tmp / "model.o"
        _run_compiler([*argv, *flags, "-I", str(RUNTIME_DIR), "-c", str(c_path), "-o", str(obj)],
                      obj, str(c_path), "generated code")
        _link(argv, flags, runtime_flags, obj, tmp / so_path.name, str(c_path))
        _move_into_cache(tmp / so_path.name, so_path)
    return BuildResult(so_path, False, time.perf_counter() - start, c_path)


def main():
    """`python -m hytorch.build`: build the C runtime for this machine now (setup does it
    once, so that the first model staged later compiles only its own code)."""
    argv = compiler_command()
    archive = runtime_archive(argv, build_flags(argv=argv))
    print(f"C runtime: {archive.path} ({archive.seconds:.2f} s)")


if __name__ == "__main__":
    main()
