"""A mutable run-time variable of staged code (`new`, `set`, `get`): what a variable assigned
under staged control flow becomes (hytorch.control), and a staged loop's counter.

    (let x0 new (let x1 (set x0 0) ... (let x5 (get x0) ...
"""
import sys

from hytorch import builder, lift, stand_ins
from hytorch.errors import StagingError
from hytorch.ir import types as shapes
from hytorch.ir.syntax import Sym
from hytorch.values import Rep, Staged, atom, scalar_kind


class Cell:
    """A mutable run-time variable (`new`), written with `set` and read with `get`. It holds
    numbers (int, float, bool: its C type is their join) or tensors of one type: a tensor
    carried from one iteration of a staged loop to the next (an RNN's hidden state)."""

    def __init__(self, name, st):
        self.name = name
        self.kind = None
        self.tensor = None      # the TensorType of a cell holding tensors
        self.requires_grad = False
        self.sym = st.emit(Sym("new"))

    def set(self, value, where=None):
        value = _as_staged_tensor(value)
        if getattr(value, "kind", None) == "tensor":
            self._set_tensor(value, where)
        else:
            self._set_scalar(value, where)
        builder.current().emit([Sym("set"), self.sym, atom(value)])

    def _held(self):
        """What the cell holds, for an error message."""
        if self.tensor is not None:
            return f"a {shapes.show(self.tensor)} tensor"
        return "a number"

    def _set_scalar(self, value, where):
        kind = scalar_kind(value)
        if kind is None or self.tensor is not None:
            raise StagingError(
                f"`{self.name}` is assigned under staged control flow, so it must keep holding "
                f"{self._held()} or a staged scalar, not {type(value).__name__} ({value!r:.60})",
                where)
        self.kind = kind if self.kind in (None, kind) else "float"

    def _set_tensor(self, value, where):
        if self.kind is not None or (self.tensor is not None and self.tensor != value.type):
            raise StagingError(
                f"`{self.name}` is assigned under staged control flow: it holds {self._held()}, "
                f"so it cannot take a {shapes.show(value.type)} tensor (a variable carried "
                "through a staged loop keeps one shape and dtype)", where)
        self.tensor = value.type
        self.requires_grad = self.requires_grad or value.requires_grad

    def get(self):
        sym = builder.current().emit([Sym("get"), self.sym])
        if self.tensor is not None:
            return lift.staged_tensor(sym, self.tensor, self.requires_grad)
        return Rep(sym, self.kind)


def _as_staged_tensor(value):
    """A torch tensor (a module's parameter) assigned to a cell is lifted, as an op would."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor) and not isinstance(value, Staged):
        stand_ins.load_staged_tensors()
        return lift.lift_tensor(value)
    return value
