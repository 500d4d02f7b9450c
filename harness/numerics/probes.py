"""Finite-difference probes of one input's candidate gradient along a direction: the
reading, its allowance, confirmation at smaller steps and the kink test."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import torch

from harness.diagnose.mismatch import format_index, kink_phrase
from harness.numerics.allowance import allowance
from harness.numerics.differences import Derivative, ScalarFn, all_finite, directional, one_sided
from harness.tolerances import (
    DIRECTION_SIGMAS,
    DIRECTION_STEP_SAFETY,
    FD_CONFIRM_SHRINKS,
    FD_SAFETY,
    Tolerance,
    fd_rounding,
)

REDRAWS = 3
"""Random directions drawn at most per probe, where finite differences are unreliable."""


class Probe(NamedTuple):
    """One finite-difference reading along a direction u, beside the candidate's <g, u>."""

    derivative: Derivative
    actual: float
    allowed: float

    @property
    def agrees(self) -> bool:
        return abs(self.actual - self.derivative.value) <= self.allowed  # NaN disagrees

    @property
    def detects(self) -> float:
        """The smallest error on one element that would have made this probe disagree, for a
        direction whose components are 0 or at least 1 in size (see `signs`): its error moves
        <g, u> by at least its size, on top of the gap already there."""
        return self.allowed + abs(self.actual - self.derivative.value)


def _steady(a: Probe, b: Probe, gap: float) -> bool:
    """Whether two readings at different steps, each sharp beside the gap they confirm, give
    the same derivative within their errors."""
    da, db = a.derivative, b.derivative
    sharp = FD_SAFETY * max(da.error, db.error) < gap / 2
    return sharp and abs(da.value - db.value) <= FD_SAFETY * (da.error + db.error)


SIGN_WEIGHTS = (1.0, 1.5)
"""Each sign direction's components have a random size in this range."""


def signs(n: int, gen: torch.Generator) -> torch.Tensor:
    """n independent random signs, each of a random size in SIGN_WEIGHTS: every component is
    at least 1 in size, so no element hides an error behind a small weight (as a Gaussian
    direction's can), and errors of one size on several elements cannot cancel exactly (as
    along plain +-1, where an error constant on 2 elements, e.g. a sparsemax backward that
    forgets the support's mean, cancels with probability 1/2 per direction). One uniform
    draw w in [-1, 1) per component gives both: its sign, and the size low + (high-low)|w|."""
    low, high = SIGN_WEIGHTS
    w = torch.rand(n, generator=gen, dtype=torch.float64).mul_(2).sub_(1)
    negative = w < 0
    return w.mul_(high - low).add_(low).add_(negative, alpha=-2 * low)  # in place: n ~ 10^7


def balanced(u: torch.Tensor) -> torch.Tensor:
    """`u` (components 0 or at least 1 in size) with its sum at least 1 in size, by flipping
    the sign of its first nonzero component where it is not: |S - 2u_j| >= 2|u_j| - |S| >= 1.
    A constant error c on every element moved by u then moves <g, u> by |c S| >= |c|, as an
    error on one element does. Along random signs alone |S| < 1 at about 0.6/sqrt(n) of the
    draws (a fifth at 8 elements), and the constant's reading could cancel there."""
    total = float(u.sum())
    if abs(total) < 1:
        moved = u.nonzero()
        if len(moved):
            j = int(moved[0])
            u[j] = -u[j]
    return u


def sizes(n: int, gen: torch.Generator) -> torch.Tensor:
    """n positive weights of random size in SIGN_WEIGHTS (see signs)."""
    low, high = SIGN_WEIGHTS
    return torch.rand(n, generator=gen, dtype=torch.float64).mul_(high - low).add_(low)


@dataclass(frozen=True)
class Target:
    """One input's candidate gradient and everything needed to probe it."""

    phi: ScalarFn
    xs: tuple[torch.Tensor, ...]
    pos: int
    label: str
    cand: torch.Tensor
    tol: Tolerance
    radius: torch.Tensor | None
    noise: torch.Tensor | None

    def probe(self, u: torch.Tensor) -> Probe:
        """(FD derivative along u, candidate's <g, u>, allowed difference).

        A disagreement is re-measured at smaller steps and stands unless a reading there agrees
        and is sharp enough to have seen it: its finite-difference error allowance below half
        the gap (the dtype's share of the allowance is the same at every step). Once two
        sharp readings in a row give the same derivative, the smaller steps are not taken: a
        kink near enough to sway a smaller step would have swayed these two differently, and
        one exactly at the point shows at any step, where the kink test looks.
        """
        first = self._probe(u, 1.0)
        gap = abs(first.actual - first.derivative.value)
        if gap <= first.allowed:
            return first
        previous, read = first, []
        for shrink in FD_CONFIRM_SHRINKS:
            read.append(shrink)
            again = self._probe(u, shrink)
            if FD_SAFETY * again.derivative.error >= gap / 2:
                previous = None
                continue
            if again.agrees:
                return again
            if previous is not None and _steady(previous, again, gap):
                break
            previous = again
        return self._kink(u, first, read) or first

    def _kink(self, u: torch.Tensor, first, shrinks=FD_CONFIRM_SHRINKS):
        """At a kink central differences mean nothing: if the one-sided slopes disagree and
        the candidate lies between them, accept it and say it is a kink.

        Along a direction over many elements the test runs along |u|: then torch's kink
        conventions (0, or an even split) are convex combinations of each element's one-sided
        slopes, so they fall between the summed left and right slopes. The price: an error
        smaller than the kinks' spread can hide there; elementwise probes have no such gap.
        """
        one_hot = int((u != 0).sum()) == 1
        w = u if one_hot else u.abs()
        base = first if one_hot else self._probe(w, 1.0)
        actual = base.actual
        cap = self._budget(w)[1]
        # Largest step first: an exact kink shows at any step, and small steps pay in rounding;
        # a point merely near a kink shows only once the step no longer reaches across it.
        for shrink in shrinks:
            right, left = one_sided(self.phi, self.xs, self.pos, w, self.radius, shrink, cap)
            slack = ((base.allowed - FD_SAFETY * base.derivative.error)
                     + FD_SAFETY * (right.error + left.error))
            low, high = sorted((left.value, right.value))
            if high - low > slack and low - slack <= actual <= high + slack:
                kink = Derivative(value=actual, error=0.0, kink=(left.value, right.value))
                return Probe(kink, actual, slack)
        return None

    def kink_at(self, i: int) -> str | None:
        """A description of the kink at element i, if its one-sided slopes differ."""
        u = torch.zeros(self.cand.numel(), dtype=torch.float64)
        u[i] = 1.0
        u = u.view(self.cand.shape).to(self.cand.device)
        right, left = one_sided(self.phi, self.xs, self.pos, u, self.radius,
                                FD_CONFIRM_SHRINKS[-1])
        actual = float(self.cand.flatten()[i])
        scale = max(abs(left.value), abs(right.value), abs(actual))
        slack = self.tol.rtol * scale + self.tol.floor + FD_SAFETY * (right.error + left.error)
        if abs(right.value - left.value) <= slack:
            return None
        return kink_phrase(format_index(self.label, self.index(i)),
                                    (left.value, right.value), actual)

    def _probe(self, u: torch.Tensor, shrink: float) -> Probe:
        """One reading along u. An element's allowance is the table's tolerance, as element
        by element; a direction over many elements sums the directional tolerance's budget
        in quadrature (DIRECTION_SIGMAS spreads, or the plain sum if smaller), the measured
        rounding noise included, and takes a step cut until the finite difference's rounding
        is a small part of that: fewer kinks crossed (see differences.directional)."""
        base, cap = self._budget(u)
        actual = float(torch.dot(self.cand.reshape(-1), u.reshape(-1)))  # <g, u>, no temporary
        d = directional(self.phi, self.xs, self.pos, u, self.radius, shrink, cap=cap,
                        accept=lambda d1, err: abs(actual - d1) <= base + FD_SAFETY * err)
        return Probe(d, actual, base + FD_SAFETY * d.error)

    def _budget(self, u: torch.Tensor) -> tuple[float, float | None]:
        """(allowance before the finite difference's own error, step cap) along u."""
        moved = int(torch.count_nonzero(u))
        spread = torch.mul(self._per_element(moved > 1), u, out=self._scratch).abs_()
        linear, quadrature = float(spread.sum()), float(spread.norm())
        base = min(linear, DIRECTION_SIGMAS * quadrature)
        if moved <= 1:
            return base, None
        rounding = fd_rounding(self.xs[self.pos].dtype) * self.magnitude
        return base, DIRECTION_STEP_SAFETY * FD_SAFETY * rounding / max(base, 1e-300)

    def _per_element(self, across: bool) -> torch.Tensor:
        """Each element's budget for an element probe, or (`across`) a direction over many."""
        return self._direction_budget if across else self.element_budget

    def _budget_of(self, tol: Tolerance) -> torch.Tensor:
        return allowance(self.cand, tol, noise=self.noise)

    @functools.cached_property
    def element_budget(self) -> torch.Tensor:
        """Each element's allowance, as an element-by-element comparison gives it."""
        return self._budget_of(self.tol)

    @functools.cached_property
    def _direction_budget(self) -> torch.Tensor:
        return self._budget_of(self.tol.directional)

    @functools.cached_property
    def _scratch(self) -> torch.Tensor:
        """Room for a budget times a direction (budgets are >= 0, so |that| is the spread):
        one allocation per input, not per direction (inputs can be 10^7 elements)."""
        return torch.empty_like(self.cand, dtype=torch.float64)

    @functools.cached_property
    def finite(self) -> bool:
        """Whether every element of the candidate gradient is finite."""
        return all_finite(self.cand)

    @functools.cached_property
    def magnitude(self) -> float:
        """The size of phi's terms at the inputs, which sets its rounding."""
        return self.phi(self.xs)[1]

    def random_probe(self, support: torch.Tensor, gen: torch.Generator, confirm: bool = True):
        """A probe along random signs on `support`, redrawn where FD is unreliable and
        its error is not small beside the allowance.

        Unconfirmed (one step size, no kink test) inside localization: a kink artefact there
        only leads down a branch that ends at an element probe, which is confirmed.
        """
        for _ in range(REDRAWS):
            u = torch.zeros(self.cand.numel(), dtype=torch.float64)
            u[support] = signs(len(support), gen)
            u = self.movable(u)
            u = u.view(self.cand.shape).to(self.cand.device)
            result = self.probe(u) if confirm else self._probe(u, 1.0)
            d = result.derivative
            if d.reliable or FD_SAFETY * d.error <= result.allowed / 2:
                break  # a zero derivative is never 'reliable', but its error is in bounds
        return result

    @functools.cached_property
    def _movable(self) -> torch.Tensor | None:
        x = self.xs[self.pos]
        return None if all_finite(x) else torch.isfinite(x).flatten().double().cpu()

    def movable(self, u: torch.Tensor) -> torch.Tensor:
        """`u` with 0 at -inf/inf/NaN entries of the input (a masked softmax's -inf): a step
        there means nothing, so directions leave them alone."""
        return u if self._movable is None else u * self._movable

    def element_probe(self, i: int):
        u = torch.zeros(self.cand.numel(), dtype=torch.float64)
        u[i] = 1.0
        return self.probe(u.view(self.cand.shape).to(self.cand.device))

    def index(self, flat: int) -> tuple[int, ...]:
        return tuple(int(j) for j in torch.unravel_index(torch.tensor(flat), self.cand.shape))


