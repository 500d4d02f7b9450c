"""harness.checks.common's shared draws."""

import torch

from harness.checks.common import gaussian


def test_gaussian_draws_afresh_from_its_generator_on_the_cpu_then_moves():
    """Every call draws the next values of `gen` (the checks draw weights, directions and
    jitters one after another from one generator), the same as torch.randn would; `to` takes
    a device, or a tensor's device and dtype."""
    gen, again = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    first, second = gaussian((2, 3), gen), gaussian((2, 3), gen)
    assert first.dtype == torch.float64 and first.shape == (2, 3)
    assert not torch.equal(first, second)
    assert torch.equal(first, torch.randn((2, 3), generator=again, dtype=torch.float64))
    like = torch.zeros(4, dtype=torch.float32)
    moved = gaussian((4,), torch.Generator().manual_seed(3), like)
    assert moved.dtype == torch.float32
    assert torch.equal(moved, torch.randn(4, generator=torch.Generator().manual_seed(3),
                                          dtype=torch.float64).float())
