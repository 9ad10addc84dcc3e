"""The exceptions HyTorch raises. All derive from HyTorchError."""
import math


class HyTorchError(Exception):
    """Base class of every HyTorch error."""


class StagingError(HyTorchError):
    """A program could not be staged. `where` is "file.hy:LINE:COL" when known.

    >>> str(StagingError("`yield` cannot be staged", "model.hy:3:5"))
    'model.hy:3:5: `yield` cannot be staged'
    """

    def __init__(self, message, where=None):
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class IRSyntaxError(HyTorchError):
    """IR text that does not parse; names the line, column and offset."""

    def __init__(self, message, line, column, offset):
        self.line, self.column, self.offset = line, column, offset
        super().__init__(f"IR syntax error at line {line}, column {column} (offset {offset}): {message}")


class IRError(HyTorchError):
    """IR that parses but cannot be compiled (unknown node, wrong arity, type or shape error)."""


class CompilerNotFound(HyTorchError):
    """No C compiler: HyTorch needs one to build staged code."""


class CCompileError(HyTorchError):
    """The C compiler rejected generated code. `c_path` is the kept C file."""

    def __init__(self, message, c_path, compiler_output):
        self.c_path = c_path
        self.compiler_output = compiler_output
        super().__init__(f"{message}\nC source kept at: {c_path}\n{compiler_output}")


class BuildError(HyTorchError):
    """Building or loading compiled code failed outside the C compiler: an unusable cache
    directory, the archiver, a library that does not load."""


class ExecutionError(HyTorchError):
    """Compiled code stopped with an error (the message comes from the C runtime)."""


def show_int(x):
    """An integer as an error message shows it: in full up to 40 digits, else by its size
    (Python refuses str() of ints over 4300 digits).

    >>> show_int(2**64)
    '18446744073709551616'
    >>> show_int(-10**5000)
    '-~10**5000 (16610 bits)'
    """
    if abs(x) < 10**40:
        return str(x)
    sign = "-" if x < 0 else ""
    bits = abs(x).bit_length()
    return f"{sign}~10**{int(math.log10(abs(x)))} ({bits} bits)"
