"""Compare candidate gradients with finite differences of a scalar function, per input.

Small inputs are compared element by element; large ones along random sign directions (every
component +-1, a fresh draw per direction), and a failing direction is localized by group
testing: split the index set, probe each half with a direction restricted to it, recurse into
the halves that disagree. One wrong element among N is named in about 2*log2(N) probes.

Every verdict states its power (`detects`): the smallest error on any one element that it
would have caught. Element by element that is the element's allowance plus the gap already
there; along a sign direction an element's error moves <g, u> by exactly its size, so it is
the direction's allowance plus its gap, the smallest over the directions drawn.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import torch

from harness.checks.common import with_measured_rounding
from harness.checks.verdict import InputVerdict
from harness.diagnose.mismatch import (
    Mismatch,
    along_directions,
    compare,
    format_index,
    kink_phrase,
    located_phrase,
    nonfinite_phrase,
    pattern,
    split_phrase,
    spread_phrase,
    unlocated_phrase,
)
from harness.inputs import Example
from harness.numerics.allowance import allowance, element_power
from harness.numerics.differences import ScalarFn, elementwise, remembering
from harness.numerics.localize import found_pattern, localize, sign_split
from harness.numerics.probes import Target
from harness.numerics.screen import SCREEN_MIN, joint_screen, screen
from harness.tolerances import (
    FD_SAFETY,
    Tolerance,
)

CONFIRM_MAX = 2
"""Disagreeing elements of an input re-measured (smaller steps, one-sided at kinks) before
the rest stand on their first reading, when none of them met a kink: two that stood make
the failure sure. Each costs ~15 readings (a whole backward each in second order): eight took
20 of the 39 ms of a failing fd check on 30 elements (timm's Mish with its backward 2% off)."""
CONFIRM_INPUTS = 3
"""Inputs whose disagreeing elements get CONFIRM_MAX re-measurements; once this many inputs
failed, the next ones confirm one element each (a model's wrong backward makes every
upstream parameter fail: the failure is sure, and the count and pattern are first readings
beyond the confirmed elements anyway)."""
SETTLE_AFTER = CONFIRM_MAX + 2
"""Element by element, once this many disagreeing elements read smooth at both steps, later
disagreeing ones are read at one step (differences.elementwise's settle_after): the first ones
are those _confirm_elements re-measures, and only they need the Richardson pair."""
ELEMENTWISE_LOCATING = 64
"""Where a failing comparison is looked at properly (the full pass), inputs up to this many
elements are read element by element, whatever `full_max` (second order's is 4)."""


@dataclass(frozen=True)
class Sweep:
    """How hard one comparison looks: inputs up to `full_max` elements element by element,
    larger ones along `directions` random directions, a failing direction `localize`d in at
    most `localize_probes` probes naming at most `localize_max` elements. `quick`: no
    confirmation at smaller steps, no kink analysis, no localization (a pass is a pass, a
    failure only means 'look properly'). `verdict_only` (Settings.verdict_only): no
    localization, and a failure stands once one disagreeing element stood its confirmation."""

    full_max: int
    directions: int
    localize_probes: int
    localize_max: int
    localize: bool = True
    quick: bool = False
    verdict_only: bool = False

    @property
    def elementwise_max(self) -> int:
        """Inputs up to this many elements are compared element by element. Where a failure
        is being located, that is up to ELEMENTWISE_LOCATING: 2n readings name every wrong
        element, where group testing over a few dozen elements takes hundreds (and cannot
        name elements that are all wrong)."""
        if self.localize and not (self.quick or self.verdict_only):
            return max(self.full_max, ELEMENTWISE_LOCATING)
        return self.full_max

    @property
    def confirm_max(self) -> int:
        """Disagreeing elements re-measured before the rest stand on their first reading."""
        return 1 if self.verdict_only else CONFIRM_MAX

    @classmethod
    def first_order(cls, settings, localize: bool = True) -> Sweep:
        return cls(settings.full_max, settings.directions, settings.localize_probes,
                   settings.localize_max, localize and not settings.verdict_only,
                   verdict_only=settings.verdict_only)

    @classmethod
    def second_order(cls, settings) -> Sweep:
        return cls(settings.second_order_full_max, settings.second_order_directions,
                   settings.localize_probes, settings.localize_max)


def _unlocated(t: Target, e, a, allow, bad, story: str) -> Mismatch:
    return along_directions(t.label, t.cand.numel(), e, a, allow, bad, story)


def _nonfinite_verdict(t: Target, sweep: Sweep) -> InputVerdict:
    """A NaN or infinite candidate element is wrong wherever finite differences are finite;
    named directly, no probing needed to find it."""
    flat = (~torch.isfinite(t.cand)).flatten().nonzero().flatten().tolist()
    d, actual, allowed = t.element_probe(flat[0])
    if not math.isfinite(d.value):  # the function itself is singular there: no verdict
        return InputVerdict(t.label, None, 0.0, 0.0)
    shown = flat[:sweep.localize_max]
    where = ", ".join(format_index(t.label, t.index(i)) for i in shown)
    more = ", ..." if len(flat) > len(shown) else ""
    m = Mismatch(label=t.label, count=len(flat), total=t.cand.numel(), index=t.index(flat[0]),
                 expected=d.value, actual=actual, abs_err=math.inf, rel_err=math.inf,
                 allowed=allowed, rest_err=float("nan"),
                 pattern=nonfinite_phrase(len(flat), where + more))
    return InputVerdict(t.label, m, math.inf, math.inf)


def _directional_verdict(t: Target, sweep: Sweep, gen) -> InputVerdict:
    everywhere = torch.arange(t.cand.numel())
    probes = []
    for _ in range(sweep.directions):
        # once one disagreement stood its confirmation the failure is sure: the other
        # directions are read once, for the count and the pattern
        sure = any(not p.agrees for p in probes) and not sweep.quick
        probes.append(t.random_probe(everywhere, gen, confirm=not (sweep.quick or sure)))
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
        return InputVerdict(t.label, None, max_abs, max_rel, unreliable, kinks=kinks,
                            detects=min(p.detects for p in probes), directions=len(probes))
    along = pattern(e, a, bad, allow)
    if not sweep.localize or sweep.quick:
        m = _unlocated(t, e, a, allow, bad, f"along random directions: {along}")
        return InputVerdict(t.label, m, max_abs, max_rel, unreliable)
    found, complete, tried = localize(t, gen, sweep.localize_probes, sweep.localize_max)
    split = None if found and complete else sign_split(t, gen)
    if not found:
        story = (split_phrase(split, tried, len(found), sweep.localize_max) if split
                 else spread_phrase(along, tried, complete))
        m = _unlocated(t, e, a, allow, bad, story)
        return InputVerdict(t.label, m, max_abs, max_rel, unreliable)
    worst = max(found, key=lambda f: f.excess)
    if complete:
        count = len(found)
        where = ", ".join(format_index(t.label, t.index(f.flat)) for f in found)
        story = located_phrase(count, where, found_pattern(found))
    else:
        count = max(len(found), sweep.localize_max + 1)
        story = (split_phrase(split, tried, len(found), sweep.localize_max) if split
                 else unlocated_phrase(sweep.localize_max, along, tried))
    gap = abs(worst.actual - worst.reference)
    m = Mismatch(label=t.label, count=count, total=t.cand.numel(), index=t.index(worst.flat),
                 expected=worst.reference, actual=worst.actual, abs_err=gap,
                 rel_err=gap / max(abs(worst.reference), 1e-300), allowed=worst.allowed,
                 rest_err=float("nan"), pattern=story)
    return InputVerdict(t.label, m, max_abs, max_rel, unreliable)


def _confirm_elements(t: Target, ref, err, allowed, confirm_max: int = CONFIRM_MAX):
    """Re-measure disagreeing elements at smaller steps, then one-sided at kinks; keep the
    reading that agrees, if any. Once confirm_max of them stood with no kink met, the others
    keep their first reading (a failure is sure; its count and pattern stay those measured).
    Returns (ref, err, allowed, kink descriptions)."""
    bad = (~((t.cand.cpu() - ref).abs() <= allowed)).flatten().nonzero().flatten()
    if len(bad) == 0:
        return ref, err, allowed, ()
    ref, err, allowed = ref.clone(), err.clone(), allowed.clone()
    flat_ref, flat_err, flat_allowed = ref.view(-1), err.view(-1), allowed.view(-1)
    kinks, standing = [], 0
    for i in bad.tolist():
        if standing >= confirm_max and not kinks:
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


class _FirstDoubt:
    """elementwise's stop for a verdict only: the first element past `bar` ends the sweep
    (`reached` elements were read); the full pass or _one_stands looks at it properly."""

    def __init__(self, cand: torch.Tensor, bar: torch.Tensor):
        self.cand, self.bar, self.reached = cand, bar, cand.numel()

    def __call__(self, i: int, d: float, error: float) -> bool:
        if abs(float(self.cand[i]) - d) <= float(self.bar[i]) + FD_SAFETY * error:
            return False
        self.reached = i + 1
        return True


@functools.lru_cache(maxsize=32)
def _quick(sweep: Sweep) -> Sweep:
    return replace(sweep, quick=True)


def compare_measuring_rounding_on_doubt(ex: Example, phi: ScalarFn, candidates, tol,
                                        sweep: Sweep, make_gen, noise=None, on_doubt=None,
                                        at_inputs=None) -> list[InputVerdict]:
    """A quick compare_with_fd with phi's rounding assumed (eps x its terms); only when that
    fails, the whole comparison (confirmations, kinks, localization) with phi's rounding
    measured (checks.common.with_measured_rounding). Everything the full pass adds can only
    rescue a failure, so a quick pass stands, input by input: the full pass reads only the
    inputs that failed it. Saves most of the work where the gradient is right.
    `noise` may be a callable (checks.common.on_demand): the candidate's rounding noise is
    then measured only when the quick pass without it fails, or, where it passes, for its
    `detects` (a doubt would have allowed the noise: the stated power must too; None in
    float64, where it costs nothing). `on_doubt(sweep, verdicts)`,
    asked only when the quick pass failed, gives the sweep of the full pass, or None to keep
    the quick verdicts. `at_inputs`: phi at the example's inputs, where the caller has it
    (checks.common.phi_at_inputs)."""
    quick = _quick(sweep)
    measure_noise = noise if callable(noise) else None
    noise = None if callable(noise) else noise
    xs = ex.reference_inputs()
    phi = remembering(phi, xs, ELEMENTWISE_LOCATING, at_inputs)  # the passes read the same points
    verdicts = compare_with_fd(ex, phi, candidates, tol, quick, make_gen(), noise, xs)
    if not any(v.mismatch for v in verdicts):
        if sweep.verdict_only or measure_noise is None or (noise := measure_noise()) is None:
            return verdicts  # a verdict alone states no power
        # below float64 a doubt would measure the rounding noise and allow it, so a pass's
        # `detects` allows it too (remembered readings are not read again)
        return compare_with_fd(ex, phi, candidates, tol, quick, make_gen(), noise, xs)
    if measure_noise is not None and (noise := measure_noise()) is not None:
        verdicts = compare_with_fd(ex, phi, candidates, tol, quick, make_gen(), noise, xs,
                                   settled=verdicts)
        if not any(v.mismatch for v in verdicts):
            return verdicts
    if on_doubt is not None and (sweep := on_doubt(sweep, verdicts)) is None:
        return verdicts  # the caller takes the quick verdicts as they are
    gen = make_gen()
    measured = with_measured_rounding(phi, ex, gen, xs)
    if sweep.verdict_only and _one_stands(ex, measured, candidates, tol, verdicts, noise, xs):
        return verdicts  # a verdict only: the failure is sure, its description is not asked
    return compare_with_fd(ex, measured, candidates, tol, sweep, gen, noise, xs,
                           settled=verdicts)


def _one_stands(ex: Example, phi: ScalarFn, candidates, tol, verdicts, noise, xs) -> bool:
    """Whether an element the quick element-by-element pass found wrong stays wrong when
    re-measured as the full pass would (_confirm_elements: smaller steps, kinks, measured
    rounding), until one stands."""
    for k, (pos, v) in enumerate(zip(ex.wrt, verdicts)):
        if v.mismatch is None or v.reference is None or v.allowed is None:
            continue
        t = Target(phi, xs, pos, ex.labels[pos], candidates[k].detach().double(), tol,
                   ex.safe_radius[pos], None if noise is None else noise[k])
        ref, _, allowed, _ = _confirm_elements(t, v.reference, torch.zeros_like(v.reference),
                                               v.allowed, confirm_max=1)
        if not bool(((t.cand.cpu() - ref).abs() <= allowed).all()):
            return True
    return False


def _center_kept(phi: ScalarFn, xs) -> ScalarFn:
    """phi that evaluates the unmoved inputs `xs` once: every input's Target asks for the
    value there (its magnitude sets the rounding), and each evaluation is a forward call."""
    kept = []

    def at(inputs):
        if inputs is not xs:
            return phi(inputs)
        if not kept:
            kept.append(phi(inputs))
        return kept[0]

    return at


def compare_with_fd(
    ex: Example,
    phi: ScalarFn,
    candidates: list[torch.Tensor],
    tol: Tolerance,
    sweep: Sweep,
    gen: torch.Generator,
    noise: list[torch.Tensor] | None = None,
    xs: tuple | None = None,
    settled: list[InputVerdict] | None = None,
) -> list[InputVerdict]:
    """Candidate gradient (one per checked input) vs finite differences of `phi`, looked at
    as `sweep` says; `noise` is the candidates' measured rounding noise (see
    checks.common.rounding_noise). `xs`: the example's reference inputs, where the caller
    has them (differences.remembering keys on them). `settled`: an earlier pass's verdicts
    with no more allowance than this one's; the inputs that passed there stand and are not
    read again."""
    xs = ex.reference_inputs() if xs is None else xs
    phi = _center_kept(phi, xs)
    targets = [Target(phi, xs, pos, ex.labels[pos], candidates[k].detach().double(), tol,
                      ex.safe_radius[pos], None if noise is None else noise[k])
               for k, pos in enumerate(ex.wrt)]
    if settled is None and len(targets) > 1 and all(
            0 < t.cand.numel() <= sweep.elementwise_max and t.finite for t in targets
    ) and (joint := joint_screen(targets, gen)):
        return joint
    verdicts = []
    for k, t in enumerate(targets):
        pos = t.pos
        if settled is not None and settled[k].mismatch is None:
            verdicts.append(settled[k])
            continue
        failed = sum(v.mismatch is not None for v in verdicts)
        confirm_max = sweep.confirm_max if failed < CONFIRM_INPUTS else 1
        if t.cand.numel() == 0:
            verdicts.append(InputVerdict(t.label, None, 0.0, 0.0, detects=0.0))
        elif not t.finite:
            verdicts.append(_nonfinite_verdict(t, sweep))
        elif t.cand.numel() > SCREEN_MIN and (screened := screen(
                t, gen, strict=t.cand.numel() <= sweep.elementwise_max)):
            verdicts.append(screened)
        elif t.cand.numel() <= sweep.elementwise_max:
            strict = allowance(t.cand, tol, noise=t.noise).flatten() / 2
            cand = t.cand.flatten()
            doubt = _FirstDoubt(cand, 2 * strict) if sweep.verdict_only else None
            fd = elementwise(
                phi, xs, pos, t.radius, accept=lambda i, d, e, cand=cand, strict=strict:
                abs(float(cand[i]) - d) <= float(strict[i]) + FD_SAFETY * e, stop=doubt,
                settle_after=SETTLE_AFTER)
            ref, err, untrusted = fd.values, fd.errors, fd.untrusted
            if doubt is not None:  # a verdict only: elements not reached read as agreeing
                unread = (torch.arange(cand.numel()) >= doubt.reached).view(ref.shape)
                ref, err = torch.where(unread, t.cand.cpu(), ref), err.masked_fill(unread, 0.0)
                untrusted = untrusted & ~unread
            unreliable = int(untrusted.sum())
            allowed = allowance(ref, tol, err, t.noise)
            kinks = ()
            if not sweep.quick:
                ref, err, allowed, kinks = _confirm_elements(t, ref, err, allowed,
                                                            confirm_max)
                # kink notes where the finite-difference error, not the tolerance, set the bar
                shaky = (untrusted & (FD_SAFETY * err > allowed / 2)
                         ).flatten().nonzero().flatten().tolist()
                kinks += tuple(k for k in (t.kink_at(i) for i in shaky)
                               if k and k not in kinks)
            m, max_abs, max_rel = compare(t.label, ref, t.cand, allowed, values=xs[pos])
            verdicts.append(InputVerdict(t.label, m, max_abs, max_rel, unreliable, ref, allowed,
                                         kinks, element_power(ref, t.cand, allowed),
                                         checked=t.cand, values=xs[pos]))
        else:
            verdicts.append(_directional_verdict(t, sweep, gen))
    return verdicts
