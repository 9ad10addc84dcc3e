"""hytorch.bench's arithmetic: the operations of an epoch it divides by the measured time."""
import hy  # noqa: F401
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from hytorch.bench import epoch_gflop
from hytorch.examples.mnist_mlp import Net


def test_epoch_gflop_counts_what_a_training_step_computes():
    """epoch_gflop agrees with torch's own count of a step's matrix products (forward and
    backward) times the number of samples."""
    torch.manual_seed(0)
    model, samples = Net(), 7
    x, y = torch.rand(samples, 1, 28, 28), torch.randint(0, 10, (samples,))
    with FlopCounterMode(display=False) as counter:
        F.nll_loss(model(x), y).backward()
    assert epoch_gflop(model, samples) * 1e9 == pytest.approx(counter.get_total_flops(), rel=1e-12)
