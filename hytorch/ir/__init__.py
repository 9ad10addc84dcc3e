"""The IR core shared by the front end (which stages programs into IR) and the backend (which
compiles IR): `syntax` (symbols, the text form, reader and printer), `types` (tensor types)
`ops` (the table of tensor ops: torch functions, shape rules, kernels, gradients),
`optimizers` (the table of optimizers: torch class, hyperparameters, state, step kernel) and
`format` (format strings as `printf` reads them). It
imports nothing else of HyTorch but its errors, so both sides depend on it and never on each
other the wrong way round.

    >>> from hytorch.ir.syntax import parse_ir, print_ir
    >>> print_ir(parse_ir("(def f (in) (begin (begin (let x0 (* in 2) x0))))"))
    '(def f (in) (begin (begin (let x0 (* in 2) x0))))'
"""
import hy  # noqa: F401  (the modules are Hy)
