"""`print` and `.format` inside defstaged functions: printing happens when the code runs.

    (print (.format "Epoch {} loss {:.4f}" epoch loss))
    ;; staged: (printf ("Epoch {} loss {:.4f}" x3 x9)); constants are formatted right away
"""
from hytorch import builder
from hytorch.ir.syntax import Sym
from hytorch.ir.format import format_fields, format_pieces
from hytorch.errors import StagingError
from hytorch.source_location import user_location
from hytorch.values import Staged, StagedStr, _Sentinel, is_staged, scalar_kind, value_kind


class StagedFormat:
    """A format string with staged arguments, printed by the compiled code."""

    def __init__(self, fmt, args):
        self.fmt, self.args = fmt, args

    def __repr__(self):
        return f"<staged format {self.fmt!r}>"


def _escape(text):
    return text.replace("{", "{{").replace("}", "}}")


def _holds_staged(value, seen=None):
    """Whether `value` is a list, tuple, set or dict holding a staged value (at any depth)."""
    if not isinstance(value, (list, tuple, set, frozenset, dict)):
        return False
    seen = set() if seen is None else seen
    if id(value) in seen:
        return False
    seen.add(id(value))
    items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
    return any(is_staged(v) or isinstance(v, (StagedFormat, _Sentinel)) or _holds_staged(v, seen)
               for v in items)


def _refuse_staged_inside(values):
    """Python would show the staged values inside a container as their values; the compiled
    code cannot (it prints scalars and strings): refuse rather than print `<staged int x3>`."""
    if any(_holds_staged(v) for v in values):
        raise StagingError("a staged value inside a list, tuple, set or dict cannot be printed "
                           "or formatted; print or format its elements", user_location())


def _staged_field(spec, value, conversion=None):
    if isinstance(value, StagedStr):
        raise StagingError("a staged string can be printed on its own, (print s), but not "
                           "formatted or printed with other values", user_location())
    if scalar_kind(value) is None:
        raise StagingError(f"a staged {value.kind} cannot be formatted; format a scalar "
                           "(for a tensor element use (.item t))", user_location())
    field = "{" + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
    try:
        format_pieces(field, [value.kind])
    except ValueError as e:
        raise StagingError(str(e), user_location()) from None
    return field


def stage_format(template, *args, **kwargs):
    """`(.format template args...)`: Python's result unless an argument is staged."""
    if builder.current() is not None:
        _refuse_staged_inside([*args, *kwargs.values()])
    if not isinstance(template, str) or not any(map(is_staged, list(args) + list(kwargs.values()))):
        return template.format(*args, **kwargs)
    if kwargs:
        raise StagingError("named arguments to .format cannot be staged; use {} fields",
                           user_location())
    try:  # the fields as Python numbers them ("{} {0}" is an error)
        fields = list(format_fields(template, len(args)))
    except ValueError as e:
        raise StagingError(f"the format string {template!r}: {e}", user_location()) from None
    out, staged_args = [], []
    for text, index, spec, conversion in fields:
        out.append(_escape(text))
        if index is None:
            continue
        value = args[index]
        if is_staged(value):
            if conversion not in (None, "s", "r"):
                raise StagingError(f"conversion !{conversion} cannot be staged", user_location())
            out.append(_staged_field(spec, value, conversion))
            staged_args.append(value)
        else:
            shown = {"r": repr, "a": ascii, "s": str}.get(conversion, lambda v: v)(value)
            out.append(_escape(format(shown, spec)))
    return StagedFormat("".join(out), staged_args)


def _as_format(value):
    """(format text, staged args) printing `value` the way Python's print would."""
    if isinstance(value, _Sentinel):
        value._fail()
    if isinstance(value, StagedFormat):
        return value.fmt, value.args
    if isinstance(value, Staged):
        return _staged_field("", value), [value]
    return _escape(str(value)), []


def stage_print(*values, sep=" ", end="\n", file=None, flush=False):
    """`print` in staged code: emits `(print ...)`/`(printf ...)` to run when the code runs."""
    st = builder.current()
    if st is None:
        return print(*values, sep=sep, end=end, file=file, flush=flush)
    if file is not None or end != "\n" or not isinstance(sep, str):
        raise StagingError("print in staged code supports only the default `file` and `end`",
                           user_location())
    _refuse_staged_inside(values)
    if len(values) == 1 and isinstance(values[0], Staged) and value_kind(values[0]):
        st.emit([Sym("print"), values[0].sym])
        return None
    if not any(isinstance(v, (Staged, StagedFormat, _Sentinel)) for v in values):
        st.emit([Sym("print"), sep.join(map(str, values))])
        return None
    parts = [_as_format(v) for v in values]
    fmt = _escape(sep).join(f for f, _ in parts)
    st.emit([Sym("printf"), [fmt] + [a.sym for _, args in parts for a in args]])
    return None
