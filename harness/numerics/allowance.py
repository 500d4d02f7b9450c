"""The per-element allowance, the one tolerance formula every comparison and every
finite-difference probe budgets with (harness.tolerances gives its terms), and the power of an
element-by-element comparison that used it."""

from __future__ import annotations

import torch

from harness.tolerances import FD_SAFETY, NOISE_SAFETY, Tolerance


def allowance(
    reference: torch.Tensor,
    tol: Tolerance,
    fd_error: torch.Tensor | float | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-element allowed absolute error (see harness.tolerances for the formula): the one
    place the per-element formula is computed (finite-difference probes budget with it too)."""
    allowed = reference.detach().double().abs()  # in place from here: one temporary (10^7)
    scale = float(allowed.max()) if allowed.numel() else 0.0
    allowed = allowed.mul_(tol.rtol).add_(tol.atol * scale + tol.floor)
    if fd_error is not None:
        allowed = allowed.add_(fd_error, alpha=FD_SAFETY) if isinstance(
            fd_error, torch.Tensor) and fd_error.shape == allowed.shape else (
            allowed + FD_SAFETY * fd_error)
    if noise is not None:
        allowed = allowed.add_(noise.to(allowed.device), alpha=NOISE_SAFETY)
    return allowed


def element_power(reference: torch.Tensor, actual: torch.Tensor, allowed: torch.Tensor) -> float:
    """The smallest error on one element that an element-by-element comparison would have
    caught: its allowance plus the gap already there, the largest over the elements."""
    if not reference.numel():
        return 0.0
    return float((allowed + (actual.to(reference) - reference).abs()).max())
