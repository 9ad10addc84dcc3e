"""HyTorch's Hy macros (installed as hytorch.macros): `defstaged` and its rewrite."""
