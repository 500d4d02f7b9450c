"""Screens: a few readings along random directions that stand for the element-by-element
comparison where the gradient is right, at its power.

An error on one element moves <g, u> by at least its size (every component of u is at least
1 in size), so a reading held to half of the smallest element's allowance doubts wherever
element by element would fail; errors on several elements pass only if their weighted sum
cancels to within that half. Float64 finite differences agree with a correct gradient far
closer than any allowance, so the screen passes there, and any doubt goes element by element.
"""

from __future__ import annotations

import math

import torch

from harness.checks.verdict import InputVerdict
from harness.numerics.differences import directional, step_size
from harness.numerics.probes import Target, balanced, signs
from harness.tolerances import DIRECTION_STEP_SAFETY, FD_SAFETY, fd_rounding

SCREEN_DIRECTIONS = 1
"""Readings a screen takes where a doubt goes element by element (2 forward calls each, as
gradcheck's fast mode per input): random signs of random sizes (probes.signs), their sum held
away from 0 (probes.balanced), so an error on one element and the commonest error on many,
one constant added to every element (a backward that forgets to subtract a mean), cannot
cancel along it. Other errors on several elements cancel only where their signed sum comes
within half an allowance of 0; tests/bench_screen_power.py measures that rate beside a
second, all-positive direction, which doubled this screen's cost."""
ALONG_DIRECTIONS = 2
"""Readings the screen of a large input takes (held to each direction's summed allowance):
the balanced signs, then the same sizes all positive. Along signs an error of one sign on
n elements moves the reading by about sqrt(n) of them, against an allowance summed over n;
along positive sizes it moves it by all n, so the second reading keeps the screen's power
for such errors (a forgotten mean, a scale off) where the first would need sqrt(n) times
more (tests/bench_screen_power.py, n=500)."""
SCREEN_MIN = 2
"""Inputs with more elements than this, checked element by element, are screened first:
2 readings a direction, where element by element takes 2 an element."""


def _stands(gap: float, bar: float, error: float, rounding: float) -> bool:
    """Whether one reading passes a screen held to `bar`: it agrees to within half of `bar`
    plus the finite difference's error, and that error is either small beside `bar` or its
    assumed rounding alone (a gradient of zeros, floor or a cast, whose every element would
    pass on that rounding too). An error grown by the Richardson pair's disagreement (a step
    across a kink) never stands in for `bar`: that input is looked at properly."""
    fd_part = FD_SAFETY * error
    return math.isfinite(gap) and gap <= (bar + fd_part) / 2 and (
        fd_part <= bar or error <= 2 * rounding)


def _unsure(gap: float, bar: float, error: float, rounding: float) -> bool:
    """Whether a reading that does not stand would, were its finite-difference error
    smaller: the gap is within that error, which is more than its rounding (truncation, or
    a kink). Worth a reading at a finer step; a gap beyond the error is not."""
    return (not _stands(gap, bar, error, rounding)
            and math.isfinite(gap) and gap <= (bar + FD_SAFETY * error) / 2)


def _directions(t: Target, gen: torch.Generator, count: int):
    """The screen's directions: balanced random signs, then (a second) the same sizes, all
    positive (one random draw for both: inputs can be 10^7 elements)."""
    u = balanced(t.movable(signs(t.cand.numel(), gen))).view(t.cand.shape)
    u = u if t.cand.device.type == "cpu" else u.to(t.cand.device)
    yield u
    if count > 1:
        yield u.abs()


def screen(t: Target, gen: torch.Generator, strict: bool = True) -> InputVerdict | None:
    """One input's screen: a pass, or None (look properly). Each reading takes one step,
    and the Richardson pair only where that one disagrees.

    `strict` where a doubt goes element by element: held to half of the smallest element's
    allowance, a pass has the elementwise power. Otherwise (an input compared along random
    directions, too large to go element by element) each direction is held to half of its
    own allowance, as the directions read after a doubt are: a pass claims no more than they
    would have caught."""
    if not strict:
        return _along_allowance(t, gen)
    budget = t.element_budget
    bar, worst = float(budget.min()), float(budget.max())
    rounding = fd_rounding(t.xs[t.pos].dtype) * t.magnitude
    cap = DIRECTION_STEP_SAFETY * FD_SAFETY * rounding / max(bar, 1e-300)
    worst_gap = worst_rel = spread = 0.0
    for u in _directions(t, gen, SCREEN_DIRECTIONS):
        actual = float(torch.dot(t.cand.reshape(-1), u.reshape(-1)))
        d = directional(t.phi, t.xs, t.pos, u, t.radius, cap=cap, accept=lambda d1, err, a=actual:
                        abs(a - d1) <= (bar + FD_SAFETY * err) / 2,
                        refine=lambda d, a=actual: _unsure(abs(a - d.value), bar, d.error,
                                                           d.rounding))
        gap = abs(actual - d.value)
        if not _stands(gap, bar, d.error, d.rounding):
            return None
        worst_gap = max(worst_gap, gap)
        worst_rel = max(worst_rel, gap / max(abs(d.value), 1e-300))
        spread = max(spread, FD_SAFETY * d.error + gap)
    return InputVerdict(t.label, None, worst_gap, worst_rel, detects=worst + spread,
                        directions=SCREEN_DIRECTIONS)


def _along_allowance(t: Target, gen: torch.Generator) -> InputVerdict | None:
    """The screen of a large input: every direction agrees with half its allowance (the
    directional tolerance summed over its elements, the finite difference's error included)
    to spare; its power is that allowance plus the gap, the smallest over the directions (an
    error on one element moves every one of them), as the directions read after a doubt
    would have it."""
    worst_abs = worst_rel = 0.0
    detects = math.inf
    for u in _directions(t, gen, ALONG_DIRECTIONS):
        probe = t._probe(u, 1.0)
        d, actual, allowed = probe
        gap = abs(actual - d.value)
        if not _stands(gap, allowed - FD_SAFETY * d.error, d.error, d.rounding):
            return None
        worst_abs = max(worst_abs, gap)
        worst_rel = max(worst_rel, gap / max(abs(d.value), 1e-300))
        detects = min(detects, probe.detects)
    return InputVerdict(t.label, None, worst_abs, worst_rel, detects=detects,
                        directions=ALONG_DIRECTIONS)


def joint_screen(targets: list[Target], gen: torch.Generator) -> list[InputVerdict] | None:
    """Every input's screen from the same readings: all inputs move at once, input k by
    t * h_k * u_k, so d/dt phi = sum_k h_k <g_k, u_k>, held to half of the smallest
    h_k x element allowance over all inputs (each input's own step h_k). An error on one
    element of input k moves the reading by at least h_k times its size: each input keeps
    its own screen's power, for 2 forward calls in all instead of 2 an input. None (screen
    input by input) at any doubt, or where a step leaves the function's domain."""
    phi, xs = targets[0].phi, targets[0].xs
    rounding = max(fd_rounding(xs[t.pos].dtype) for t in targets)
    worst = [float(t.element_budget.max()) for t in targets]
    floors = [float(t.element_budget.min()) for t in targets]
    spread = [0.0] * len(targets)
    worst_gap = [0.0] * len(targets)
    worst_rel = 0.0
    directions = [list(_directions(t, gen, SCREEN_DIRECTIONS)) for t in targets]
    for k in range(SCREEN_DIRECTIONS):
        moves, actual, bar = [], 0.0, math.inf
        for t, floor, drawn in zip(targets, floors, directions):
            u = drawn[k]
            h = step_size(xs[t.pos], u, t.radius)
            moves.append((t.pos, u, h))
            actual += h * float(torch.dot(t.cand.reshape(-1), u.reshape(-1)))
            bar = min(bar, h * floor)

        def at(step: float, moves=moves):
            moved = list(xs)
            for pos, u, h in moves:
                x = xs[pos]
                moved[pos] = torch.add(x.double(), u, alpha=step * h).to(x.dtype)
            return phi(tuple(moved))

        (f1, m1), (f2, m2) = at(1.0), at(-1.0)
        value, error = (f1 - f2) / 2, rounding * max(m1, m2)
        assumed = error
        if math.isfinite(value) and abs(actual - value) > (bar + FD_SAFETY * error) / 2:
            (f3, m3), (f4, m4) = at(2.0), at(-2.0)
            d1, d2 = value, (f3 - f4) / 4
            assumed = rounding * max(m1, m2, m3, m4)
            error = abs(d1 - d2) + assumed
            value = d1 + (d1 - d2) / 3
            if _unsure(abs(actual - value), bar, error, assumed):
                (f5, m5), (f6, m6) = at(0.5), at(-0.5)  # Romberg, as differences.directional
                finer = (f5 - f6) + ((f5 - f6) - d1) / 3
                assumed = 2 * rounding * max(m1, m2, m3, m4, m5, m6)
                error, value = abs(finer - value) + assumed, finer
        gap = abs(actual - value)
        if not _stands(gap, bar, error, assumed):
            return None
        worst_rel = max(worst_rel, gap / max(abs(value), 1e-300))
        for i, (_, _, h) in enumerate(moves):
            spread[i] = max(spread[i], (FD_SAFETY * error + gap) / h)
            worst_gap[i] = max(worst_gap[i], gap / h)
    return [InputVerdict(t.label, None, g, worst_rel, detects=w + s,
                         directions=SCREEN_DIRECTIONS)
            for t, g, w, s in zip(targets, worst_gap, worst, spread)]
