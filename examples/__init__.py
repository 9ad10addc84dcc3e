"""HyTorch's examples (installed as hytorch.examples): run one with `hy examples/NAME.hy`
or `python -m hytorch.examples.NAME`."""
import hy  # noqa: F401
