"""Staged scalars: Python values that stand for run-time values and emit IR when used.

    with Staging():
        n = Rep(Sym("in"), "int")
        (n * 2 + 1).sym        # -> x1, after (let x0 (* in 2) (let x1 (+ x0 1) ...))
"""
from hytorch import builder
from hytorch.backend.ir import Sym
from hytorch.errors import StagingError
from hytorch.source_location import user_location

NUMERIC_KINDS = ("bool", "int", "float")


def is_staged(x):
    return isinstance(x, Staged)


def scalar_kind(x):
    """The kind of a staged scalar or a Python constant: 'bool', 'int', 'float' or None."""
    if isinstance(x, Rep):
        return x.kind
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, int):
        return "int"
    if isinstance(x, float):
        return "float"
    return None


def promote(*kinds):
    """Kind of an arithmetic result: float if any operand is float, else int."""
    return "float" if "float" in kinds else "int"


INT64_MIN, INT64_MAX = -2**63, 2**63 - 1


def atom(x, what="value"):
    """The IR atom of a staged value or a Python constant; anything else is a StagingError."""
    if isinstance(x, Staged):
        return x.sym
    if isinstance(x, _Sentinel):
        x._fail()
    if isinstance(x, int) and not isinstance(x, bool) and not INT64_MIN <= x <= INT64_MAX:
        raise StagingError(f"the integer {x} does not fit in the 64 bits compiled code computes with",
                           user_location())
    if x is None or isinstance(x, (bool, int, float)):
        return x
    raise StagingError(f"a {type(x).__name__} ({x!r:.60}) cannot be used as a staged {what}",
                       user_location())


class Staged:
    """Base of every staged value (scalars, tensors, loaders, optimizers)."""

    kind = "value"

    def __init__(self, sym):
        self.sym = sym

    __hash__ = object.__hash__

    def _refuse(self, what):
        raise StagingError(
            f"a staged {self.kind} ({self.sym}) was used {what}; Python needs its value now, "
            "but it is only known when the compiled code runs", user_location())

    def __bool__(self):
        self._refuse("as a Python truth value (in `and`/`or`/`not` outside defstaged, "
                     "or a condition that was not staged)")

    def __index__(self):
        self._refuse("as a Python integer (an index, a size or a range bound)")

    def __int__(self):
        self._refuse("as a Python int")

    def __float__(self):
        self._refuse("as a Python float")

    def __iter__(self):
        self._refuse("as a Python iterable")

    def __format__(self, spec):
        self._refuse("in Python string formatting (use (.format \"...\" v) or print inside defstaged)")

    def __str__(self):
        self._refuse("as a Python string (print it, or format it with (.format \"{}\" v))")

    def __repr__(self):
        return f"<staged {self.kind} {self.sym}>"


def _binary(op, result_kind):
    def method(self, other):
        if scalar_kind(other) is None:
            return NotImplemented
        return Rep(builder.current().emit([Sym(op), self.sym, atom(other)]),
                   result_kind(self.kind, scalar_kind(other)))

    def reflected(self, other):
        if scalar_kind(other) is None:
            return NotImplemented
        return Rep(builder.current().emit([Sym(op), atom(other), self.sym]),
                   result_kind(scalar_kind(other), self.kind))
    return method, reflected


def _arith(a, b):
    return promote(a, b)


def _true_div(a, b):
    return "float"


def _compare(a, b):
    return "bool"


class Rep(Staged):
    """A staged scalar of kind 'int', 'float' or 'bool' bound to an IR symbol."""

    def __init__(self, sym, kind):
        super().__init__(sym)
        self.kind = kind

    __add__, __radd__ = _binary("+", _arith)
    __sub__, __rsub__ = _binary("-", _arith)
    __mul__, __rmul__ = _binary("*", _arith)
    __truediv__, __rtruediv__ = _binary("/", _true_div)
    __floordiv__, __rfloordiv__ = _binary("//", _arith)
    __mod__, __rmod__ = _binary("%", _arith)
    __lt__, _ = _binary("<", _compare)
    __le__, _ = _binary("<=", _compare)
    __gt__, _ = _binary(">", _compare)
    __ge__, _ = _binary(">=", _compare)
    __eq__, _ = _binary("==", _compare)
    __ne__, _ = _binary("!=", _compare)
    __hash__ = Staged.__hash__

    def __neg__(self):
        return 0 - self

    def __pos__(self):
        return self

    def __pow__(self, exponent):
        """x ** n for a constant integer n >= 1, multiplied out while staging (as `power`)."""
        if isinstance(exponent, Staged) or not isinstance(exponent, int) or exponent < 1:
            raise StagingError("`**` of a staged number needs a constant integer exponent of at "
                               "least 1 (it is multiplied out while staging)", user_location())
        result = self
        for _ in range(exponent - 1):
            result = result * self
        return result

    def __abs__(self):
        from hytorch.control import stage_choice
        return stage_choice(self < 0, lambda: 0 - self, lambda: self)


class _Sentinel:
    """A variable with no staged value at this point; any use is a StagingError."""

    def __init__(self, message):
        self._message = message

    def _fail(self, *args, **kwargs):
        raise StagingError(self._message, user_location())

    __bool__ = __index__ = __int__ = __float__ = __iter__ = __call__ = __format__ = _fail
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _fail
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _fail
    __lt__ = __le__ = __gt__ = __ge__ = __neg__ = __getitem__ = __len__ = _fail

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        self._fail()

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        for a in list(args) + list((kwargs or {}).values()):
            if isinstance(a, _Sentinel):
                a._fail()
        return NotImplemented

    def __repr__(self):
        return "<no staged value>"


UNBOUND = _Sentinel("a variable was read before it was assigned")


def out_of_scope(name, where):
    """The value a variable holds after a staged block that alone assigned it."""
    return _Sentinel(f"`{name}` was first assigned inside the staged block at {where} and has no "
                     "value after it; assign it before that block to use it afterwards")
