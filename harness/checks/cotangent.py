"""Second order over the incoming gradient: the double backward's derivative with respect to
the cotangent v, as gradgradcheck checks it beside the one with respect to x.

psi(v) = <w, vᵀJ(x)> is linear in v, so its derivative along any cotangent direction d is
<w, dᵀJ(x)>: one first-order backward with d as its incoming gradient. The double backward's
d(psi)/dv must agree. A backward that detaches its incoming gradient, or computes with it
outside autograd, gives 0 here while its first-order values are right, and every function
differentiated through it (a gradient penalty, a Hessian-vector product) is silently wrong.
"""

from __future__ import annotations

import torch

from harness.checks.verdict import InputVerdict
from harness.diagnose.mismatch import along_directions, compare, pattern
from harness.inputs import Example
from harness.numerics.allowance import allowance
from harness.numerics.probes import signs, sizes
from harness.tolerances import Tolerance

COTANGENT_DIRECTIONS = 2
"""Cotangent directions read first (random signs, then positive sizes, as the fd screen of a
large input): one first-order backward each."""
COTANGENT_ELEMENTWISE = 64
"""Outputs up to this many elements are read element by element where a direction fails, so
the row names the element; larger ones report the directions."""


def cotangent_label(ex: Example, k: int) -> str:
    return f"grad_output {k}" if len(ex.cotangents) > 1 else "grad_output"


def incoming_leaves(ex: Example, outs) -> list[torch.Tensor]:
    """The example's cotangents as fresh leaves, requiring grad where fn's output does: the
    double backward then differentiates the backward with respect to them too."""
    return [v.to(o.dtype).detach().clone().requires_grad_(o.requires_grad)
            for o, v in zip(outs, ex.cotangents)]


def cotangent_verdicts(ex: Example, outs, leaves, incoming, candidates, weights,
                       tol: Tolerance, gen: torch.Generator) -> list[InputVerdict]:
    """One verdict per output with a graph: d/dv <w, vᵀJ(x)> by double backward
    (`candidates`, autodiff.second_order's third value) against the first backward read
    along cotangent directions, through the graph of `outs` at `leaves`."""
    slots = [k for k, o in enumerate(outs) if o.requires_grad]
    graphed = [outs[k] for k in slots]
    targets = [leaves[i] for i in ex.wrt]

    def along(slot: int, d: torch.Tensor) -> float:
        """<w, the first backward with incoming gradient d on this output, 0 on the others>"""
        given = [d.to(incoming[k].dtype) if s == slot else torch.zeros_like(incoming[k])
                 for s, k in enumerate(slots)]
        first = torch.autograd.grad(graphed, targets, given, retain_graph=True,
                                    allow_unused=True)
        total = _weighted(first, weights)
        return 0.0 if not isinstance(total, torch.Tensor) else float(total.detach())

    return [_verdict(cotangent_label(ex, k), cand, lambda d, s=slot: along(s, d), tol, gen)
            for slot, (k, cand) in enumerate(zip(slots, candidates))]


def _weighted(grads, weights):
    terms = [(g.double() * w.to(g.device)).sum() for g, w in zip(grads, weights)
             if g is not None]
    return sum(terms[1:], terms[0]) if terms else 0.0


def _verdict(label: str, cand: torch.Tensor, along, tol: Tolerance,
             gen: torch.Generator) -> InputVerdict:
    """Directions first; where one disagrees, element by element if the output is small."""
    c = cand.double().flatten()
    budget = allowance(c, tol)
    n = c.numel()
    if n == 0:
        return InputVerdict(label, None, 0.0, 0.0, detects=0.0)
    readings = []
    for k in range(COTANGENT_DIRECTIONS):
        d = (signs if k % 2 == 0 else sizes)(n, gen).to(c.device)
        reference = along(d.view(cand.shape))
        readings.append((float(torch.dot(c, d)), reference,
                         float((budget * d.abs()).sum()) + tol.rtol * abs(reference)))
    gaps = [abs(a - e) for a, e, _ in readings]
    if all(g <= allowed for g, (_, _, allowed) in zip(gaps, readings)):
        detects = min(allowed + g for g, (_, _, allowed) in zip(gaps, readings))
        rel = max(g / max(abs(e), 1e-300) for g, (_, e, _) in zip(gaps, readings))
        return InputVerdict(label, None, max(gaps), rel, detects=detects,
                            directions=COTANGENT_DIRECTIONS)
    if n <= COTANGENT_ELEMENTWISE:
        reference = torch.tensor([along(_unit(n, j).view(cand.shape).to(c.device))
                                  for j in range(n)], dtype=torch.float64).to(c.device)
        reference = reference.view(cand.shape)
        allowed = allowance(reference, tol)
        m, max_abs, max_rel = compare(label, reference, cand, allowed)
        if m is not None:
            return InputVerdict(label, m, max_abs, max_rel, reference=reference,
                                allowed=allowed, checked=cand)
    e = torch.tensor([e for _, e, _ in readings], dtype=torch.float64)
    a = torch.tensor([a for a, _, _ in readings], dtype=torch.float64)
    allow = torch.tensor([al for _, _, al in readings], dtype=torch.float64)
    bad = ~((a - e).abs() <= allow)
    m = along_directions(label, n, e, a, allow, bad,
                         f"along random directions: {pattern(e, a, bad, allow)}")
    return InputVerdict(label, m, float((a - e).abs().max()),
                        float(((a - e).abs() / e.abs().clamp_min(1e-300)).max()),
                        directions=COTANGENT_DIRECTIONS)


def _unit(n: int, j: int) -> torch.Tensor:
    u = torch.zeros(n, dtype=torch.float64)
    u[j] = 1.0
    return u
