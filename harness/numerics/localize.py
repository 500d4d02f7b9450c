"""Where in a large input the error lies, from finite-difference probes along directions
restricted to parts of it: group testing names single elements (about 2*log2(N) probes for
one wrong element among N); where it names none, a sign split says whether the error lies
where the input is negative (or positive)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from harness.diagnose.mismatch import factor_of, pattern
from harness.numerics.probes import Target

CLEAN_AFTER = 3
"""When a failing index set splits into two halves that both agree, the halves are probed
again, up to this many times: a wrong element whose random weight happened to be small must
not throw the search off its trail."""


SPLIT_DIRECTIONS = 3
"""Random directions over each side of a sign split: the split is named only when all of one
side's disagree and all of the other's agree."""


class Located(NamedTuple):
    """An element that group testing found wrong: its flat index and its probe's numbers."""

    flat: int
    reference: float
    actual: float
    allowed: float

    @property
    def excess(self) -> float:
        return abs(self.actual - self.reference) / self.allowed


class Localized(NamedTuple):
    """What group testing found: the wrong elements, whether the search ended, its probes."""

    found: list[Located]
    complete: bool
    probes: int


def localize(t: Target, gen, probes_max: int, found_max: int) -> Localized:
    """Group testing: the flat indices whose gradient disagrees, in at most `probes_max`
    probes naming at most `found_max` elements."""
    queue = [torch.arange(t.cand.numel())]
    found, probes = [], 0
    while queue:
        if probes >= probes_max or len(queue) + len(found) > found_max:
            return Localized(found, False, probes)
        support = queue.pop(0)
        if len(support) == 1:
            reading = t.element_probe(int(support[0]))
            probes += 1
            if not reading.agrees:
                found.append(Located(int(support[0]), reading.derivative.value, reading.actual,
                                     reading.allowed))
            continue
        half = len(support) // 2
        parts = (support[:half], support[half:])
        for _ in range(CLEAN_AFTER):
            failing = []
            for part in parts:
                reading = t.random_probe(part, gen, confirm=False)
                probes += 1
                if not reading.agrees:
                    failing.append(part)
            if failing:
                queue.extend(failing)
                break
    return Localized(found, True, probes)


def found_pattern(found: list[Located]) -> str:
    """The pattern of the located elements' own readings (each read alone, so independent),
    not of the few random directions that only said something disagrees."""
    e, a, allow = (torch.tensor(v, dtype=torch.float64) for v in zip(
        *((f.reference, f.actual, f.allowed) for f in found)))
    return pattern(e, a, torch.ones_like(e, dtype=torch.bool), allow)


def sign_split(t: Target, gen) -> str | None:
    """'the error lies where the input is negative ...' when every random direction over the
    negative (or positive) elements disagrees and every one over the rest agrees; None when
    the sign does not separate them."""
    x = t.xs[t.pos].detach().flatten().cpu()
    for name, region in (("negative", x < 0), ("positive", x > 0)):
        inside, outside = region.nonzero().flatten(), (~region).nonzero().flatten()
        if not len(inside) or not len(outside):
            continue
        ins = [t.random_probe(inside, gen) for _ in range(SPLIT_DIRECTIONS)]
        if any(p.agrees for p in ins):
            continue
        if not all(t.random_probe(outside, gen).agrees for _ in range(SPLIT_DIRECTIONS)):
            return None  # both sides disagree: the sign does not separate them
        e, a, allow = (torch.tensor(v, dtype=torch.float64) for v in zip(
            *((p.derivative.value, p.actual, p.allowed) for p in ins)))
        factor = factor_of(e, a, allow)
        n = SPLIT_DIRECTIONS
        return (f"the error lies where the input is {name} ({len(inside):,} of {x.numel():,} "
                f"elements): random directions over them disagree ({n} of {n}), over the "
                f"other {len(outside):,} they agree ({n} of {n})"
                + (f"; there, {factor}, the same in all {n} readings" if factor else ""))
    return None
