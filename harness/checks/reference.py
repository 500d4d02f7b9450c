"""Compare candidate gradients with finite differences of a scalar function, per input.

Small inputs are compared element by element; large ones along random directions (mixed
signs, a fresh draw per direction), and a failing direction is localized by group testing:
split the index set, probe each half with a direction restricted to it, recurse into the
halves that disagree. One wrong element among N is named in about 2*log2(N) probes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from harness.checks.common import with_measured_rounding
from harness.diagnose.mismatch import (
    Mismatch,
    allowance,
    compare,
    format_index,
    kink_phrase,
    located_phrase,
    nonfinite_phrase,
    pattern,
    spread_phrase,
    unlocated_phrase,
)
from harness.inputs import Example
from harness.numerical import Derivative, ScalarFn, directional, elementwise, one_sided
from harness.tolerances import (
    DIRECTION_SIGMAS,
    FD_CONFIRM_SHRINKS,
    FD_SAFETY,
    FD_UNRELIABLE,
    NOISE_SAFETY,
    Tolerance,
)

REDRAWS = 3
CONFIRM_MAX = 8
SCREEN_DIRECTIONS = 2
SCREEN_MIN = 8
"""Inputs with more elements than this, checked element by element, first get a screen along
random directions; only a screen that does not pass clearly goes element by element."""
CLEAN_AFTER = 3
"""When a failing index set splits into two halves that both agree, the halves are probed
again, up to this many times: a wrong element whose random weight happened to be small must
not throw the search off its trail."""


@dataclass(frozen=True)
class InputVerdict:
    """The comparison for one checked input: a mismatch or None, and the largest errors."""

    label: str
    mismatch: Mismatch | None
    max_abs: float
    max_rel: float
    unreliable: int = 0
    reference: torch.Tensor | None = None
    allowed: torch.Tensor | None = None
    kinks: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Target:
    """One input's candidate gradient and everything needed to probe it."""

    phi: ScalarFn
    xs: tuple[torch.Tensor, ...]
    pos: int
    label: str
    cand: torch.Tensor
    tol: Tolerance
    radius: torch.Tensor | None
    noise: torch.Tensor | None

    def probe(self, u: torch.Tensor) -> tuple[Derivative, float, float]:
        """(FD derivative along u, candidate's <g, u>, allowed difference).

        A disagreement is re-measured at smaller steps and stands unless a reading there agrees
        and is sharp enough to have seen it: its finite-difference error allowance below half
        the gap (the dtype's share of the allowance is the same at every step).
        """
        first = self._probe(u, 1.0)
        gap = abs(first[1] - first[0].value)
        if gap <= first[2]:
            return first
        for shrink in FD_CONFIRM_SHRINKS:
            again = self._probe(u, shrink)
            if FD_SAFETY * again[0].error >= gap / 2:
                continue
            if abs(again[1] - again[0].value) <= again[2]:
                return again
        return self._kink(u, first) or first

    def _kink(self, u: torch.Tensor, first):
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
        actual = base[1]
        # Largest step first: an exact kink shows at any step, and small steps pay in rounding;
        # a point merely near a kink shows only once the step no longer reaches across it.
        for shrink in FD_CONFIRM_SHRINKS:
            right, left = one_sided(self.phi, self.xs, self.pos, w, self.radius, shrink)
            slack = (base[2] - FD_SAFETY * base[0].error) + FD_SAFETY * (right.error
                                                                         + left.error)
            low, high = sorted((left.value, right.value))
            if high - low > slack and low - slack <= actual <= high + slack:
                kink = Derivative(value=actual, error=0.0, kink=(left.value, right.value))
                return kink, actual, slack
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

    def _probe(self, u: torch.Tensor, shrink: float) -> tuple[Derivative, float, float]:
        c = self.cand.abs()
        per_element = self.tol.rtol * c + self.tol.atol * float(c.max()) + self.tol.floor
        if self.noise is not None:
            per_element = per_element + NOISE_SAFETY * self.noise
        spread = per_element * u.abs()
        linear, quadrature = float(spread.sum()), float(spread.norm())
        base = min(linear, DIRECTION_SIGMAS * quadrature)
        actual = float((self.cand * u).sum())
        d = directional(self.phi, self.xs, self.pos, u, self.radius, shrink,
                        accept=lambda d1, err: abs(actual - d1) <= base + FD_SAFETY * err)
        return d, actual, base + FD_SAFETY * d.error

    def random_probe(self, support: torch.Tensor, gen: torch.Generator, confirm: bool = True):
        """A probe along a random direction on `support`, redrawn where FD is unreliable and
        its error is not small beside the allowance.

        Unconfirmed (one step size, no kink test) inside localization: a kink artefact there
        only leads down a branch that ends at an element probe, which is confirmed.
        """
        for _ in range(REDRAWS):
            u = torch.zeros(self.cand.numel(), dtype=torch.float64)
            u[support] = torch.randn(len(support), generator=gen, dtype=torch.float64)
            u = self.movable(u)
            u = u.view(self.cand.shape).to(self.cand.device)
            result = self.probe(u) if confirm else self._probe(u, 1.0)
            if result[0].reliable or FD_SAFETY * result[0].error <= result[2] / 2:
                break  # a zero derivative is never 'reliable', but its error is in bounds
        return result

    @functools.cached_property
    def _movable(self) -> torch.Tensor | None:
        finite = torch.isfinite(self.xs[self.pos])
        return None if bool(finite.all()) else finite.flatten().double().cpu()

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


def _localize(t: _Target, gen, settings) -> tuple[list, bool]:
    """Group testing: the flat indices whose gradient disagrees, and whether the search ended."""
    queue = [torch.arange(t.cand.numel())]
    found, probes = [], 0
    while queue:
        if probes >= settings.localize_probes or len(queue) + len(found) > settings.localize_max:
            return found, False
        support = queue.pop(0)
        if len(support) == 1:
            d, actual, allowed = t.element_probe(int(support[0]))
            probes += 1
            if not abs(actual - d.value) <= allowed:  # NaN disagrees
                found.append((int(support[0]), d.value, actual, allowed))
            continue
        half = len(support) // 2
        parts = (support[:half], support[half:])
        for _ in range(CLEAN_AFTER):
            failing = []
            for part in parts:
                d, actual, allowed = t.random_probe(part, gen, confirm=False)
                probes += 1
                if not abs(actual - d.value) <= allowed:  # NaN disagrees
                    failing.append(part)
            if failing:
                queue.extend(failing)
                break
    return found, True


def _unlocated(t: _Target, e, a, allow, bad, story: str) -> Mismatch:
    k = int(((a - e).abs() / allow).argmax())
    diff = float((a[k] - e[k]).abs())
    return Mismatch(t.label, int(bad.sum()), len(e), (), float(e[k]), float(a[k]), diff,
                    diff / max(abs(float(e[k])), 1e-300), float(allow[k]), float("nan"), story,
                    directions_of=t.cand.numel())


def _nonfinite_verdict(t: _Target, settings) -> InputVerdict:
    """A NaN or infinite candidate element is wrong wherever finite differences are finite;
    named directly, no probing needed to find it."""
    flat = (~torch.isfinite(t.cand)).flatten().nonzero().flatten().tolist()
    d, actual, allowed = t.element_probe(flat[0])
    if not math.isfinite(d.value):  # the function itself is singular there: no verdict
        return InputVerdict(t.label, None, 0.0, 0.0)
    shown = flat[:settings.localize_max]
    where = ", ".join(format_index(t.label, t.index(i)) for i in shown)
    m = Mismatch(t.label, len(flat), t.cand.numel(), t.index(flat[0]), d.value, actual,
                 math.inf, math.inf, allowed, float("nan"),
                 nonfinite_phrase(len(flat), where + (", ..." if len(flat) > len(shown)
                                                               else "")))
    return InputVerdict(t.label, m, math.inf, math.inf)


def _screen(t: _Target, settings, gen) -> InputVerdict | None:
    """A pass along SCREEN_DIRECTIONS random directions, each at one step, when every
    one agrees with half the allowance to spare and an accurate finite difference; None
    (look element by element) otherwise. Saves the elementwise sweep on correct gradients."""
    worst_abs = worst_rel = 0.0
    for _ in range(SCREEN_DIRECTIONS):
        u = t.movable(torch.randn(t.cand.numel(), generator=gen, dtype=torch.float64))
        d, actual, allowed = t._probe(u.view(t.cand.shape).to(t.cand.device), 1.0)
        fd_part = FD_SAFETY * d.error
        gap = abs(actual - d.value)
        if not (math.isfinite(gap) and fd_part <= allowed / 2 and gap <= (allowed - fd_part) / 2):
            return None
        worst_abs = max(worst_abs, gap)
        worst_rel = max(worst_rel, gap / max(abs(d.value), 1e-300))
    return InputVerdict(t.label, None, worst_abs, worst_rel)


def _directional_verdict(t: _Target, settings, gen, localize: bool,
                         directions: int | None = None, confirm: bool = True) -> InputVerdict:
    everywhere = torch.arange(t.cand.numel())
    probes = [t.random_probe(everywhere, gen, confirm=confirm)
              for _ in range(settings.directions if directions is None else directions)]
    unreliable = sum(not d.reliable for d, _, _ in probes)
    kinks = tuple(kink_phrase(f"{t.label} along a random direction", d.kink, a)
                  for d, a, _ in probes if d.kink)
    e = torch.tensor([d.value for d, _, _ in probes], dtype=torch.float64)
    a = torch.tensor([act for _, act, _ in probes], dtype=torch.float64)
    allow = torch.tensor([al for _, _, al in probes], dtype=torch.float64)
    diff = (a - e).abs()
    max_abs, max_rel = float(diff.max()), float((diff / e.abs().clamp_min(1e-300)).max())
    bad = ~(diff <= allow)  # a NaN gradient is wrong, never within tolerance
    if not bool(bad.any()):
        return InputVerdict(t.label, None, max_abs, max_rel, unreliable, kinks=kinks)
    along = pattern(e, a, bad, allow)
    if not localize:
        m = _unlocated(t, e, a, allow, bad, f"along random directions: {along}")
        return InputVerdict(t.label, m, max_abs, max_rel, unreliable)
    found, complete = _localize(t, gen, settings)
    if not found:
        m = _unlocated(t, e, a, allow, bad, spread_phrase(along))
        return InputVerdict(t.label, m, max_abs, max_rel, unreliable)
    flat, exp_i, act_i, allow_i = max(found, key=lambda f: abs(f[2] - f[1]) / f[3])
    if complete:
        count = len(found)
        where = ", ".join(format_index(t.label, t.index(f[0])) for f in found)
        story = located_phrase(count, where, along)
    else:
        count = max(len(found), settings.localize_max + 1)
        story = unlocated_phrase(settings.localize_max, along)
    m = Mismatch(t.label, count, t.cand.numel(), t.index(flat), exp_i, act_i,
                 abs(act_i - exp_i), abs(act_i - exp_i) / max(abs(exp_i), 1e-300), allow_i,
                 float("nan"), story)
    return InputVerdict(t.label, m, max_abs, max_rel, unreliable)


def _confirm_elements(t: _Target, ref, err, allowed):
    """Re-measure disagreeing elements at smaller steps, then one-sided at kinks; keep the
    reading that agrees, if any. Once CONFIRM_MAX of them stood with no kink met, the others
    keep their first reading (a failure is sure; its count and pattern stay those measured).
    Returns (ref, err, allowed, kink descriptions)."""
    bad = (~((t.cand.cpu() - ref).abs() <= allowed)).flatten().nonzero().flatten()
    if len(bad) == 0:
        return ref, err, allowed, ()
    ref, err, allowed = ref.clone(), err.clone(), allowed.clone()
    flat_ref, flat_err, flat_allowed = ref.view(-1), err.view(-1), allowed.view(-1)
    kinks, standing = [], 0
    for i in bad.tolist():
        if standing >= CONFIRM_MAX and not kinks:
            break  # the first ones all stood: the rest stand on their first reading
        d, actual, allow = t.element_probe(i)
        if abs(actual - d.value) <= allow:
            flat_ref[i], flat_err[i], flat_allowed[i] = d.value, d.error, allow
            if d.kink:
                where = format_index(t.label, t.index(i))
                kinks.append(kink_phrase(where, d.kink, actual))
        else:
            standing += 1
    return ref, err, allowed, tuple(kinks)


def compare_measuring_rounding_on_doubt(ex: Example, phi: ScalarFn, candidates, tol, settings,
                                        make_gen, **kwargs) -> list[InputVerdict]:
    """A quick compare_with_fd with phi's rounding assumed (eps x its terms); only when that
    fails, the whole comparison (confirmations, kinks, localization) with phi's rounding
    measured (checks.common.with_measured_rounding). Everything the full pass adds can only rescue a
    failure, so a quick pass stands. Saves most of the work where the gradient is right."""
    verdicts = compare_with_fd(ex, phi, candidates, tol, settings, make_gen(), quick=True,
                               **kwargs)
    if not any(v.mismatch for v in verdicts):
        return verdicts
    gen = make_gen()
    return compare_with_fd(ex, with_measured_rounding(phi, ex, gen), candidates, tol, settings,
                           gen, **kwargs)


def compare_with_fd(
    ex: Example,
    phi: ScalarFn,
    candidates: list[torch.Tensor],
    tol: Tolerance,
    settings,
    gen: torch.Generator,
    localize: bool = True,
    noise: list[torch.Tensor] | None = None,
    full_max: int | None = None,
    directions: int | None = None,
    quick: bool = False,
) -> list[InputVerdict]:
    """Candidate gradient (one per checked input) vs finite differences of `phi`.

    `noise` is the candidates' measured rounding noise (see checks.common.rounding_noise).
    `quick`: no confirmation at smaller steps, no kink analysis, no localization: a pass is a
    pass, a failure only means 'look properly'.
    """
    xs = ex.reference_inputs()
    verdicts = []
    for k, pos in enumerate(ex.wrt):
        t = _Target(phi, xs, pos, ex.labels[pos], candidates[k].detach().double(), tol,
                    ex.safe_radius[pos], None if noise is None else noise[k])
        if t.cand.numel() == 0:
            verdicts.append(InputVerdict(t.label, None, 0.0, 0.0))
        elif not bool(torch.isfinite(t.cand).all()):
            verdicts.append(_nonfinite_verdict(t, settings))
        elif t.cand.numel() > SCREEN_MIN and (screened := _screen(t, settings, gen)):
            verdicts.append(screened)
        elif t.cand.numel() <= (settings.full_max if full_max is None else full_max):
            strict = allowance(t.cand, tol, noise=t.noise).flatten() / 2
            cand = t.cand.flatten()
            ref, err = elementwise(
                phi, xs, pos, t.radius, accept=lambda i, d, e, cand=cand, strict=strict:
                abs(float(cand[i]) - d) <= float(strict[i]) + FD_SAFETY * e)
            unreliable = int((err > FD_UNRELIABLE * ref.abs()).sum())
            allowed = allowance(ref, tol, err, t.noise)
            kinks = ()
            if not quick:
                ref, err, allowed, kinks = _confirm_elements(t, ref, err, allowed)
                # kink notes where the finite-difference error, not the tolerance, set the bar
                shaky = ((err > FD_UNRELIABLE * ref.abs()) & (FD_SAFETY * err > allowed / 2)
                         ).flatten().nonzero().flatten().tolist()
                kinks += tuple(k for k in (t.kink_at(i) for i in shaky)
                               if k and k not in kinks)
            m, max_abs, max_rel = compare(t.label, ref, t.cand, allowed, values=xs[pos])
            verdicts.append(InputVerdict(t.label, m, max_abs, max_rel, unreliable, ref, allowed,
                                         kinks))
        else:
            verdicts.append(_directional_verdict(t, settings, gen, localize and not quick,
                                                 directions, confirm=not quick))
    return verdicts
