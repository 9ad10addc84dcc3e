"""The staging API: Python functions to IR (`lms_compile`), to a compiled callable (`stage`),
and IR text to either (`parse_ir`, `compile_ir`).

    >>> str(lms_compile(lambda n: n * 2 + 1))
    '(def <lambda> (in) (begin (begin (let x0 (* in 2) (let x1 (+ x0 1) x1)))))'
"""
import contextlib
import sys

from hytorch import builder
from hytorch.ir.syntax import Sym, parse_ir as _parse, print_ir
from hytorch.errors import IRError, StagingError
from hytorch.lift import guard_real_optimizer_steps
from hytorch.staged_args import describe_type, param_names, staged_argument
from hytorch.values import atom

DEF, BEGIN = Sym("def"), Sym("begin")


class IRProgram:
    """A staged function as IR: `(def NAME (PARAMS) (begin (begin ...)))`. `str()` is its text.

    `arg_types` are the types the parameters were staged with; `bindings` what the staging
    run lifted from Python (initial parameter values, loaders) for the compiled code.
    """

    def __init__(self, node, arg_types=None, bindings=None):
        if not (isinstance(node, list) and len(node) == 4 and node[0] == DEF
                and isinstance(node[2], list) and isinstance(node[3], list) and node[3][:1] == [BEGIN]):
            raise IRError("a program must have the form (def NAME (PARAMS) (begin ...)), "
                          f"not {print_ir(node)[:80]}")
        self.node = node
        self.arg_types = list(arg_types) if arg_types is not None else [int] * len(node[2])
        self.bindings = bindings or {}

    @property
    def name(self):
        return str(self.node[1])

    @property
    def params(self):
        return [str(p) for p in self.node[2]]

    def __str__(self):
        return print_ir(self.node)

    def __repr__(self):
        return f"<IRProgram {self.name} ({' '.join(self.params)})>"

    def __eq__(self, other):
        return isinstance(other, IRProgram) and str(self) == str(other)

    __hash__ = object.__hash__


def _function_name(f):
    return getattr(f, "__name__", None) or type(f).__name__


def lms_compile(f, *arg_types):
    """Stage `f` with parameters of `arg_types` (default: one `int`) and return its IR.

    Ordinary code in `f` runs now (Python loops unroll, calls inline); operations on the
    staged parameters, and control flow that depends on them, become IR.
    """
    arg_types = list(arg_types) or [int]
    params = param_names(len(arg_types))
    parameter_calls = contextlib.nullcontext()
    if sys.modules.get("torch") is not None:  # a torch already imported (None: blocked)
        guard_real_optimizer_steps()
        from hytorch.parameter_calls import staging_parameter_calls
        parameter_calls = staging_parameter_calls()
    with builder.Staging() as st, parameter_calls:
        args = [staged_argument(t, Sym(p), st, i) for i, (t, p) in enumerate(zip(arg_types, params))]
        try:
            result = f(*args)
        except RecursionError:
            raise StagingError(
                f"staging `{_function_name(f)}` went deeper than Python's recursion limit: a "
                "recursion that ends only at run time becomes a staged function, but one whose "
                "arguments change at each call is inlined, level by level; make it shallower or "
                "write it as a loop") from None
        st.root.result = atom(st.check_result(result), "result")
    node = [DEF, Sym(_function_name(f)), [Sym(p) for p in params], [BEGIN, st.root_node()]]
    return IRProgram(node, arg_types, st.bindings())


def parse_ir(text):
    """Read IR text (HyTorch's or snek-LMS's printed IR) into an IRProgram."""
    return IRProgram(_parse(text))


def stage(f, *arg_types):
    """Stage `f`, compile it to C and return the callable (see `lms_compile` for arg_types).

    The result has `.ir` (text), `.c_source`, `.staged_source` (the rewrite's Python, when `f`
    is a defstaged function) and runs the compiled code when called.
    """
    program = lms_compile(f, *arg_types)
    from hytorch.native import compile_program  # the backend, loaded on the first compile
    compiled = compile_program(program)
    compiled.staged_from = f
    return compiled


def compile_ir(text, *arg_types):
    """Compile IR text; `arg_types` give its parameters' types (default `int`; `object` for a
    parameter that stood for a model, optimizer or loader when the IR was staged)."""
    program = parse_ir(text) if isinstance(text, str) else text
    if arg_types:
        if len(arg_types) != len(program.params):
            raise IRError(f"{program.name} has {len(program.params)} parameter(s) "
                          f"but {len(arg_types)} type(s) were given")
        program.arg_types = list(arg_types)
    from hytorch.native import compile_program  # the backend, loaded on the first compile
    return compile_program(program)


__all__ = ["IRProgram", "lms_compile", "parse_ir", "stage", "compile_ir", "describe_type"]
