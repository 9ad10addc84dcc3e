"""Staged scalars: Python values that stand for run-time values and emit IR when used.

    with Staging():
        n = Rep(Sym("in"), "int")
        (n * 2 + 1).sym        # -> x1, after (let x0 (* in 2) (let x1 (+ x0 1) ...))
"""
from hytorch import builder
from hytorch.ir.syntax import Sym
from hytorch.errors import StagingError, show_int
from hytorch.source_location import user_location

NUMERIC_KINDS = ("bool", "int", "float")
MULTIPLIED_OUT = 16   # a staged int ** n with n up to this is n - 1 multiplications in a row


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


def value_kind(x):
    """scalar_kind, or 'str' for a string, staged or not: what a staged `if` may produce."""
    return "str" if isinstance(x, (str, StagedStr)) else scalar_kind(x)


def promote(*kinds):
    """Kind of an arithmetic result: float if any operand is float, else int."""
    return "float" if "float" in kinds else "int"


INT64_MIN, INT64_MAX = -2**63, 2**63 - 1


def atom(x, what="value"):
    """The IR atom of a staged value or a Python constant (a number, None or a string);
    anything else is a StagingError."""
    if isinstance(x, Staged):
        return x.sym
    if isinstance(x, _Sentinel):
        x._fail()
    if isinstance(x, int) and not isinstance(x, bool) and not INT64_MIN <= x <= INT64_MAX:
        raise StagingError(f"the integer {show_int(x)} does not fit in the 64 bits compiled code computes with",
                           user_location())
    if isinstance(x, str) and "\0" in x:
        raise StagingError(f"the string {x!r:.60} holds a NUL character, which a staged string "
                           "cannot", user_location())
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise StagingError(f"a {type(x).__name__} ({x!r:.60}) cannot be used as a staged {what}",
                       user_location())


class StagedAttributeError(StagingError, AttributeError):
    """An attribute or method a staged value does not support. It is an AttributeError too,
    so `getattr(x, name, default)` and `hasattr` work as on any object."""


_OPERATORS = {"add": "+", "sub": "-", "mul": "*", "truediv": "/", "floordiv": "//", "mod": "%",
              "pow": "**", "matmul": "@", "and": "&", "or": "|", "xor": "^", "lshift": "<<",
              "rshift": ">>"}
_ORDERINGS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_UNARY = {"neg": "-", "pos": "+", "invert": "~ (bnot)", "abs": "abs", "round": "round",
          "trunc": "math.trunc", "floor": "math.floor", "ceil": "math.ceil"}


def _refusing_operator(op):
    def method(self, other, *_):
        self._refuse_operator(op, other)
    return method


def _refusing_unary(op):
    def method(self, *_):
        self._refuse_operator(op)
    return method


class Staged:
    """Base of every staged value (scalars, strings, tensors, loaders, optimizers).

    What Python would do with the value now, while staging (its truth, its digits), and every
    operator and attribute a kind of staged value does not define, is a StagingError naming
    the user's form: `(& x 3)` of a staged float says "`&` of a staged float ...".
    """

    kind = "value"

    def __init__(self, sym):
        self.sym = sym

    __hash__ = object.__hash__

    def _refuse(self, what):
        raise StagingError(
            f"a staged {self.kind} ({self.sym}) was used {what}; Python needs its value now, "
            "but it is only known when the compiled code runs", user_location())

    def _refuse_operator(self, op, *other):
        operands = f"a staged {self.kind}" + (f" and {_describe(other[0])}" if other else "")
        raise StagingError(f"`{op}` of {operands} cannot be staged", user_location())

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

    def __len__(self):
        self._refuse("with `len`")

    def __getitem__(self, index):
        self._refuse("as a Python container (indexed)")

    def __format__(self, spec):
        self._refuse("in Python string formatting (use (.format \"...\" v) or print inside defstaged)")

    def __str__(self):
        self._refuse("as a Python string (print it, or format it with (.format \"{}\" v))")

    def __repr__(self):
        return f"<staged {self.kind} {self.sym}>"

    def __getattr__(self, name):
        # Only called for attributes the class does not define; Python's own protocols
        # (dunders) and private names keep their usual AttributeError.
        if name.startswith("_"):
            raise AttributeError(name)
        raise StagedAttributeError(f"`.{name}` of a staged {self.kind} is not supported",
                                   user_location())



def _install_refusals(cls):
    for name, op in _OPERATORS.items():
        setattr(cls, f"__{name}__", _refusing_operator(op))
        setattr(cls, f"__r{name}__", _refusing_operator(op))
    for name, op in _ORDERINGS.items():
        setattr(cls, f"__{name}__", _refusing_operator(op))
    for name, op in _UNARY.items():
        setattr(cls, f"__{name}__", _refusing_unary(op))


_install_refusals(Staged)


def _describe(x):
    return f"a staged {x.kind}" if isinstance(x, Staged) else f"{type(x).__name__} {x!r:.40}"


def _defers(other):
    """Whether a binary operator should leave `other` to its own reflected method: another
    staged value, a torch tensor, a user's class (built-in types have nothing to add)."""
    return isinstance(other, Staged) or type(other).__module__ != "builtins"


def _binary(op, result_kind):
    def method(self, other):
        if scalar_kind(other) is None:
            return NotImplemented if _defers(other) else self._refuse_operator(op, other)
        kind = result_kind(op, self.kind, scalar_kind(other))
        return Rep(builder.current().emit([Sym(op), self.sym, atom(other)]), kind)

    def reflected(self, other):
        if scalar_kind(other) is None:
            return NotImplemented if _defers(other) else self._refuse_operator(op, other)
        kind = result_kind(op, scalar_kind(other), self.kind)
        return Rep(builder.current().emit([Sym(op), atom(other), self.sym]), kind)
    return method, reflected


def _equality(op):
    """`==` / `!=`: with a value that is not a number, Python's answer (identity), as
    `5 == "a"` is False."""
    def method(self, other):
        if scalar_kind(other) is None:
            return NotImplemented
        return Rep(builder.current().emit([Sym(op), self.sym, atom(other)]), "bool")
    return method


def _arith(op, a, b):
    return promote(a, b)


def _true_div(op, a, b):
    return "float"


def _compare(op, a, b):
    return "bool"


def _bitwise(op, a, b):
    """Python's: ints and bools only; bool & bool is a bool, a shift is always an int."""
    if "float" in (a, b):
        raise StagingError(f"`{op}` needs ints or bools, not a float (as in Python)",
                           user_location())
    return "bool" if a == b == "bool" and op in ("&", "|", "^") else "int"


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
    __and__, __rand__ = _binary("&", _bitwise)
    __or__, __ror__ = _binary("|", _bitwise)
    __xor__, __rxor__ = _binary("^", _bitwise)
    __lshift__, __rlshift__ = _binary("<<", _bitwise)
    __rshift__, __rrshift__ = _binary(">>", _bitwise)
    __lt__, _ = _binary("<", _compare)
    __le__, _ = _binary("<=", _compare)
    __gt__, _ = _binary(">", _compare)
    __ge__, _ = _binary(">=", _compare)
    __eq__ = _equality("==")
    __ne__ = _equality("!=")
    __hash__ = Staged.__hash__

    def __neg__(self):
        # -0.0 - x flips the sign of every float, 0.0 included (0 - 0.0 would be 0.0).
        return (-0.0 if self.kind == "float" else 0) - self

    def __pos__(self):
        return self

    def __invert__(self):
        """`(bnot x)`: -x - 1 for an int or a bool (as Python: (bnot True) is -2)."""
        _bitwise("~", self.kind, "int")
        return Rep(builder.current().emit([Sym("~"), self.sym]), "int")

    def __pow__(self, exponent):
        """x ** n for a constant integer n >= 1: for an int, multiplied out while staging (as
        `power`: x * x * x), by repeated squaring past MULTIPLIED_OUT (n = 10**12 takes 59
        multiplications; 64-bit products wrap alike in any order); for a float, C's pow, as
        Python's float ** is (`(** x0 3)`), with its OverflowError."""
        if isinstance(exponent, Staged) or not isinstance(exponent, int) or exponent < 1:
            raise StagingError("`**` of a staged number needs a constant integer exponent of at "
                               "least 1", user_location())
        if self.kind == "float":
            return Rep(builder.current().emit([Sym("**"), self.sym, exponent]), "float")
        base = self if self.kind == "int" else self * 1   # True ** 1 is 1, an int
        if exponent <= MULTIPLIED_OUT:
            result = base
            for _ in range(exponent - 1):
                result = result * base
            return result
        result = None
        while exponent:
            if exponent & 1:
                result = base if result is None else result * base
            exponent >>= 1
            if exponent:
                base = base * base
        return result

    def __abs__(self):
        if self.kind == "float":
            # x + 0.0 turns -0.0 into 0.0, as Python's abs does, and leaves the rest alone.
            return _staged_if(self < 0, lambda: 0.0 - self, lambda: self + 0.0, "float")
        return _staged_if(self < 0, lambda: 0 - self, lambda: self, "int")


def _staged_if(test, then_fn, else_fn, kind):
    """`(if TEST (begin THEN) (begin ELSE))`, a staged number of `kind`, for branches that only
    compute with staged numbers (as `abs`'s do). Nothing in them can raise, break or return,
    so they need none of the guards of the `if` of user code (control.stage_choice)."""
    st = builder.current()
    blocks = []
    for branch in (then_fn, else_fn):
        with st.block() as block:
            block.result = atom(st.check_result(branch()))
        blocks.append(block)
    return Rep(st.emit([Sym("if"), test.sym, blocks[0].node(), blocks[1].node()]), kind)


class StagedStr(Staged):
    """A staged string: one of the string constants a staged `if` chose, known at run time.
    It can be returned, printed on its own and compared for equality; anything else is a
    StagingError.

        (if (= x 0) "yes" "no")   ; => StagedStr x1 after (let x1 (if x0 (begin "yes") (begin "no")))
    """

    kind = "str"

    def _equality(op):
        def method(self, other):
            if not isinstance(other, (str, StagedStr)):
                return NotImplemented
            return Rep(builder.current().emit([Sym(op), self.sym, atom(other)]), "bool")
        return method

    __eq__ = _equality("==")
    __ne__ = _equality("!=")
    __hash__ = Staged.__hash__
    del _equality


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
    __and__ = __rand__ = __or__ = __ror__ = __xor__ = __rxor__ = __invert__ = _fail
    __lshift__ = __rlshift__ = __rshift__ = __rrshift__ = __pow__ = __abs__ = _fail

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
