"""A list of tensors whose length is known only at run time (a `hytorch.ListOf` parameter)
while staging. A `for` over it is a loop of the compiled code:

    (for [x inputs] (setv h (step x h)))
    ;; (let x3 new (let x4 (set x3 0) (while (begin (let x5 (get x3) (let x6 (len in1)
    ;;   (let x7 (< x5 x6) x7)))) (begin (let x5 (get x3) (let x6 (nth in1 x5) ...

`(len inputs)` is `(len in1)`, a staged int, and `(get inputs i)` is `(nth in1 i)` (Python's
indexing: a negative index counts from the end; one out of range raises IndexError).
"""
from hytorch import builder, lift
from hytorch.cells import Cell
from hytorch.errors import StagingError
from hytorch.ir.syntax import Sym
from hytorch.source_location import user_location
from hytorch.values import Rep, Staged, atom, scalar_kind


class StagedList(Staged):
    """The staged list parameter `sym`, of IR type `list_type` (a hytorch.ir.types.ListType)."""

    kind = "list"

    def __init__(self, sym, list_type):
        super().__init__(sym)
        self.type = list_type

    def __repr__(self):
        return f"<staged list {self.sym} of {self.type.element}>"

    def __staged_len__(self):
        return Rep(builder.current().emit([Sym("len"), self.sym]), "int")

    def __len__(self):
        raise StagingError("the length of a hytorch.ListOf argument is known only when the "
                           "compiled code runs: use it in staged code (`(len xs)` in a "
                           "defstaged function), not as a Python int", user_location())

    def __getitem__(self, index):
        if isinstance(index, slice) or scalar_kind(index) not in ("int", "bool"):
            raise StagingError(f"a hytorch.ListOf argument is indexed by an int, not "
                               f"{type(index).__name__}", user_location())
        sym = builder.current().emit([Sym("nth"), self.sym, atom(index)])
        return lift.staged_tensor(sym, self.type.element)

    def __iter__(self):
        raise StagingError("a hytorch.ListOf argument is as long as the list the compiled code "
                           "is given: only a `for` in a defstaged function can go over it (not "
                           "a comprehension, `list`, `map`, ...)", user_location())

    def __staged_enumerate__(self, start=0):
        return lift.StagedEnumerate(self, start)

    def __staged_for__(self, run_block, body, where, start=None):
        st = builder.current()
        counter = Cell("list index", st)
        counter.set(0, where)
        with st.block() as cond_block:
            cond_block.result = st.emit([Sym("<"), counter.get().sym, self.__staged_len__().sym])

        def step():
            i = counter.get()
            x = self[i]
            body(x if start is None else (i + start if start else i, x))
            counter.set(i + 1, where)
        body_block = run_block(step)
        st.emit([Sym("while"), cond_block.node(), body_block.node()])
