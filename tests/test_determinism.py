"""A function whose two calls on the same inputs differ is named as such, before any
gradient verdict: its finite differences read its own noise."""

import pytest
import torch

from harness import check_gradients


def _random_start_solver(noise: float):
    """sin(x), as an iterative solver from a random start converges to it: within `noise`."""

    def solver(x):
        return torch.sin(x) + noise * torch.rand(x.shape, dtype=x.dtype)

    return solver


@pytest.mark.parametrize("noise", [1e-4, 1e-7, 1e-9])
@pytest.mark.parametrize("seed", range(4))
def test_a_forward_that_differs_call_to_call_is_the_fd_verdict(noise, seed):
    """Named at every seed down to 1e-9 of the output (at 1e-10, 18 of 20 seeds: the
    others' readings agree within the allowance, and their pass says what it rules out)."""
    torch.manual_seed(100 + seed)  # the solver's start: the outcome does not hang on test order
    x = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(seed),
                    requires_grad=True)
    (record,) = check_gradients(_random_start_solver(noise), x, checks=("fd",),
                                seed=seed).records
    assert record.status == "fail", record.message
    assert record.pattern.startswith("fn is not deterministic: two calls on the same inputs "
                                     "differ (output 0["), record.pattern
    assert "seed its randomness" in record.pattern


def test_noise_too_small_to_move_a_reading_is_not_looked_for_and_the_check_keeps_its_power():
    """Determinism is asked only where a reading doubted or was not trusted: a clean pass
    pays nothing for it, and 1e-13 of noise moves no reading."""
    torch.manual_seed(0)
    x = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(0),
                    requires_grad=True)
    (record,) = check_gradients(_random_start_solver(1e-13), x, checks=("fd",)).records
    assert record.status == "pass", record.message
    (exact,) = check_gradients(torch.sin, x, checks=("fd",)).records
    assert record.detects < 10 * exact.detects


def test_another_familys_failure_on_a_random_function_says_so_first():
    class FlippedNoisySin(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.sin(x) + 1e-4 * torch.rand(x.shape, dtype=x.dtype)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return -g * torch.cos(x)

    torch.manual_seed(0)
    x = torch.randn(4, dtype=torch.float64, generator=torch.Generator().manual_seed(1),
                    requires_grad=True)
    (record,) = check_gradients(FlippedNoisySin.apply, x, checks=("analytic",),
                                grad=lambda x, v: v * torch.cos(x)).records
    assert record.status == "fail"
    assert record.message.startswith("fn is not deterministic"), record.message
    assert "sign flipped" in record.pattern  # the gradient verdict is still there
