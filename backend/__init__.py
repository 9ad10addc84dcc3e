"""HyTorch's backend (installed as hytorch.backend): IR text, types and shapes, gradients, C."""
