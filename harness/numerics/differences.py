"""Finite differences in float64 with an error estimate, for scalar functions of the inputs.

Every derivative is a central difference at steps h and 2h: the Richardson combination is the
value, |d(h) - d(2h)| estimates the truncation error, and eps*|f|/h the rounding error. An
estimate too large for the derivative means the step crossed a kink or a domain edge.
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from harness.tolerances import FD_UNRELIABLE, fd_rounding, fd_step

# phi(inputs) -> (value, magnitude): the scalar and the size of its terms, which sets the
# rounding error (see checks.common.phi_of).
ScalarFn = Callable[[tuple[torch.Tensor, ...]], tuple[float, float]]


EDGE_RETRIES = 4
"""How many times a step that leaves the function's domain (a non-finite value) is cut by 16."""


@dataclass(frozen=True)
class Derivative:
    """A finite-difference derivative and its error estimate; at a kink, the one-sided
    slopes (left, right) between which any value is a valid (sub)gradient."""

    value: float
    error: float
    kink: tuple[float, float] | None = None
    rounding: float = 0.0
    """The rounding part of `error`; the rest is the truncation estimate |d(h) - d(2h)|."""

    @property
    def reliable(self) -> bool:
        """False when the steps h and 2h disagree beyond rounding and FD_UNRELIABLE of the
        derivative: the step crossed a kink or a domain edge. A derivative of 0 read to
        rounding precision is reliable."""
        return untrusted(self.error, self.rounding, self.value) is False


def untrusted(error, rounding, value):
    """Where the truncation estimate (error - rounding) exceeds rounding plus FD_UNRELIABLE
    of |value|: a step that crossed a kink or a domain edge (floats or tensors alike)."""
    return (error - rounding) > rounding + FD_UNRELIABLE * abs(value) + 1e-300


def max_abs(t: torch.Tensor) -> float:
    """max |t| (NaN if any element is NaN), in one pass without a temporary: on an input of
    10^6-10^7 elements the norm kernel and a fresh |t| each cost several times more."""
    if t.numel() == 0:
        return 0.0
    if t.is_complex() or not t.is_floating_point():
        return float(torch.linalg.vector_norm(t.double() if not t.is_complex() else t, math.inf))
    low, high = torch.aminmax(t)
    low, high = float(low), float(high)
    return math.nan if math.isnan(low) or math.isnan(high) else max(-low, high)


def all_finite(t: torch.Tensor) -> bool:
    """Whether every element of t is finite: its sum is, unless an element is inf or NaN or
    the sum overflows (then each element is asked)."""
    if not (t.is_floating_point() or t.is_complex()):
        return True
    if t.element_size() == 1:  # float8: no sum of its own
        t = t.float()
    total = t.detach().sum()
    total = complex(total) if t.is_complex() else float(total)
    if cmath.isfinite(total):
        return True
    return bool(torch.isfinite(t).all())


STEP_CUT_MAX = 4096.0
"""A step `cap` (see directional) cuts the default step by at most this much."""


def remembering(phi: ScalarFn, xs: tuple, small: int,
                at_xs: tuple[float, float] | None = None) -> ScalarFn:
    """phi that keeps its readings at inputs where every input is either small (up to
    `small` elements, keyed by its values) or `xs`' own tensor. Passes over the same inputs
    read the same elements at the same steps: the full comparison after a failed quick one
    then re-reads none of them. Readings that move a larger input are not kept. `at_xs`:
    phi(xs), where the caller has it (checks.common.phi_at_inputs)."""
    seen: dict = {}

    def key_of(inputs):
        key = []
        for x, center in zip(inputs, xs):
            if isinstance(x, torch.Tensor) and x.numel() <= small:
                key.append(tuple(x.flatten().tolist()))
            elif x is center:
                key.append(None)
            else:
                return None
        return tuple(key)

    if at_xs is not None:
        seen[key_of(xs)] = at_xs

    def at(inputs):
        key = key_of(inputs)
        if key is None:
            return phi(inputs)
        if key not in seen:
            seen[key] = phi(inputs)
        return seen[key]

    return at


def step_size(x: torch.Tensor, u: torch.Tensor, radius: torch.Tensor | None,
          shrink: float = 1.0, cap: float | None = None) -> float:
    umax = max_abs(u)
    if umax == 0:  # nothing moves (every entry along u is inf or masked): any step will do
        return fd_step(x.dtype)
    scale = max_abs(x.detach()) if x.numel() else 1.0
    if not math.isfinite(scale):  # -inf entries (masked softmax): scale by the finite ones
        finite = x.abs()[torch.isfinite(x)]
        scale = float(finite.max()) if finite.numel() else 1.0
    h = fd_step(x.dtype) * max(1.0, scale) / umax
    if cap is not None:
        h = max(min(h, cap), h / STEP_CUT_MAX)
    h = h / shrink
    if radius is not None:
        moved = u != 0
        if moved.any():
            room = float((radius[moved] / u[moved].abs()).min())
            h = min(h, room / 4)  # keep x +- 2h*u inside the smooth region
    return h


def _along(phi: ScalarFn, xs, position: int, u: torch.Tensor):
    """t -> phi(xs with xs[position] + t*u)."""
    x = xs[position]
    # float64: every reading writes x + t*u into one tensor (one pass, no allocation: inputs
    # can be 10^7 elements); fn reads it and phi returns numbers before the next reading
    room = torch.empty_like(x) if x.dtype == u.dtype == torch.float64 and not (
        x.requires_grad and torch.is_grad_enabled()) else None

    def at(t: float) -> tuple[float, float]:
        moved = list(xs)
        moved[position] = (torch.add(x, u, alpha=t, out=room) if room is not None
                           else torch.add(x.double(), u, alpha=t).to(x.dtype))
        return phi(tuple(moved))

    return at


def one_sided(
    phi: ScalarFn,
    xs: tuple[torch.Tensor, ...],
    position: int,
    u: torch.Tensor,
    radius: torch.Tensor | None = None,
    shrink: float = 1.0,
    cap: float | None = None,
) -> tuple[Derivative, Derivative]:
    """(right, left) one-sided derivatives along u at step h, with |d(h) - d(2h)| as the
    error: at a kink they differ by the jump in slope, at a smooth point by O(h). Not
    Richardson-corrected: next to (not on) a kink that extrapolation overshoots."""
    h = step_size(xs[position], u, radius, shrink, cap)
    at = _along(phi, xs, position, u)
    f0, m0 = at(0.0)
    sides = []
    for sign in (1.0, -1.0):
        (f1, m1), (f2, m2) = at(sign * h), at(sign * 2 * h)
        d1, d2 = sign * (f1 - f0) / h, sign * (f2 - f0) / (2 * h)
        rounding = fd_rounding(xs[position].dtype) * max(m0, m1, m2) / h
        sides.append(Derivative(value=d1, error=abs(d1 - d2) + rounding, rounding=rounding))
    return sides[0], sides[1]


def directional(
    phi: ScalarFn,
    xs: tuple[torch.Tensor, ...],
    position: int,
    u: torch.Tensor,
    radius: torch.Tensor | None = None,
    shrink: float = 1.0,
    accept: Callable[[float, float], bool] | None = None,
    cap: float | None = None,
    settle: bool = False,
    refine: Callable[[Derivative], bool] | None = None,
) -> Derivative:
    """d/dt phi(xs with xs[position] + t*u) at t=0, at the step divided by shrink.

    `cap` caps the step (before the shrink; at most STEP_CUT_MAX below the default): a
    direction over many elements crosses a kink (a ReLU unit) with a probability that grows
    with the step, and needs no more step than its rounding allows (see numerics.probes).

    Evaluated in the dtype of `xs` (float64, unless fn cannot run in it). With `accept`, the
    two evaluations at +-h come first: when accept(d(h), its rounding error) says the
    candidate agrees with that alone (a stricter test than with the Richardson error added),
    the other two evaluations are saved. With `settle` too, a reading at +-h that accept
    rejects is kept as it is (its error: the rounding alone), the other two saved as well.
    With `refine`, a Richardson value that refine(it) still doubts is read again at +-h/2:
    the value from (h/2, h), its error the two values' difference (Romberg). Where the first
    one's error was truncation on a smooth function, that difference is far smaller; at a
    kink the two disagree and the doubt stands.
    """
    x = xs[position]
    h = step_size(x, u, radius, shrink, cap)
    at = _along(phi, xs, position, u)
    for _ in range(EDGE_RETRIES):
        (fp1, m1), (fm1, m2) = at(h), at(-h)
        if accept is not None and math.isfinite(fp1) and math.isfinite(fm1):
            d1 = (fp1 - fm1) / (2 * h)
            rounding = fd_rounding(x.dtype) * max(m1, m2) / h
            if accept(d1, rounding) or settle:  # agrees at one step, or settles for it
                return Derivative(value=d1, error=rounding, rounding=rounding)
        (fp2, m3), (fm2, m4) = at(2 * h), at(-2 * h)
        if all(math.isfinite(v) for v in (fp1, fm1, fp2, fm2)):
            break
        h /= 16  # stepped out of the domain (sqrt, log near 0): come closer
    d1 = (fp1 - fm1) / (2 * h)
    d2 = (fp2 - fm2) / (4 * h)
    rounding = fd_rounding(x.dtype) * max(m1, m2, m3, m4) / h
    found = Derivative(value=d1 + (d1 - d2) / 3, error=abs(d1 - d2) + rounding,
                       rounding=rounding)
    if refine is None or not math.isfinite(found.value) or not refine(found):
        return found
    (fp0, m5), (fm0, m6) = at(h / 2), at(-h / 2)
    d0 = (fp0 - fm0) / h
    finer = d0 + (d0 - d1) / 3
    if not math.isfinite(finer):
        return found
    rounding = fd_rounding(x.dtype) * max(m1, m2, m3, m4, m5, m6) / (h / 2)
    return Derivative(value=finer, error=abs(finer - found.value) + rounding, rounding=rounding)


class ElementwiseFD(NamedTuple):
    """The full finite-difference gradient of one input, shaped like it."""

    values: torch.Tensor
    errors: torch.Tensor
    roundings: torch.Tensor

    @property
    def untrusted(self) -> torch.Tensor:
        """Where the step crossed a kink or a domain edge (see `untrusted`)."""
        return untrusted(self.errors, self.roundings, self.values)


def elementwise(
    phi: ScalarFn,
    xs: tuple[torch.Tensor, ...],
    position: int,
    radius: torch.Tensor | None = None,
    accept: Callable[[int, float, float], bool] | None = None,
    stop: Callable[[int, float, float], bool] | None = None,
    settle_after: int | None = None,
) -> ElementwiseFD:
    """The full gradient of phi with respect to xs[position], one element at a time.

    `accept(i, d, error)` lets an element that already agrees at one step skip the Richardson
    evaluations (see directional). `stop(i, d, error)`: true ends the sweep there; the
    elements not reached are NaN. `settle_after`: once this many elements were rejected by
    `accept` and read reliable at both steps (phi smooth there, the candidate off), the later
    rejected ones keep their one-step reading: the count and pattern of a failure need their
    values, not the Richardson error estimate, which the first ones (those a comparison
    re-measures) keep.
    """
    x = xs[position]
    values, errors, roundings = (torch.full((x.numel(),), math.nan, dtype=torch.float64)
                                 for _ in range(3))
    smooth_rejected = 0
    for i in range(x.numel()):
        u = torch.zeros(x.numel(), dtype=torch.float64, device=x.device)
        u[i] = 1.0
        settle = settle_after is not None and smooth_rejected >= settle_after
        rejected = []
        d = directional(phi, xs, position, u.view_as(x), radius,
                        accept=None if accept is None else
                        lambda d1, e, i=i, rejected=rejected:
                        accept(i, d1, e) or rejected.append(i),
                        settle=settle)
        if rejected and not settle and d.reliable:
            smooth_rejected += 1
        values[i], errors[i], roundings[i] = d.value, d.error, d.rounding
        if stop is not None and stop(i, d.value, d.error):
            break
    return ElementwiseFD(values.view(x.shape), errors.view(x.shape), roundings.view(x.shape))
