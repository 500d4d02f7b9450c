"""Forward mode (gradcheck's check_forward_ad): the JVP against reverse mode, with finite
differences as the referee.

For random directions u (per checked input) and the case's cotangent w: <w, J u> from forward
AD (dual tensors, so a custom Function's `jvp` staticmethod is what runs) must match the
reverse-mode <Jᵀw, u> (which the fd check holds to finite differences). Where they disagree,
the float64 central difference d/dt <w, f(x + t u)> says which one is off. A Function with no
jvp is a skip that says how to add one.
"""

from __future__ import annotations

import time

import torch
import torch.autograd.forward_ad as fwAD

from harness import diagnose
from harness.autodiff import vjp
from harness.checks.common import check_generator, phi_of
from harness.checks.semantics import _record, _requires_backward
from harness.inputs import Example, as_outputs
from harness.numerical import directional
from harness.record import Record
from harness.tolerances import DIRECTION_SIGMAS, FD_SAFETY, tolerance_for

DIRECTIONS = 2


def _jvp(ex: Example, leaves, pos: int, u: torch.Tensor, weights) -> float:
    """<w, J u> by forward AD, with input `pos` moving along u."""
    with fwAD.dual_level():
        duals = [fwAD.make_dual(x, u.to(x.dtype)) if i == pos else x
                 for i, x in enumerate(leaves)]
        outs = as_outputs(ex.fn(*duals), ex.case.name)
        total = 0.0
        for out, w in zip(outs, weights):
            tangent = fwAD.unpack_dual(out).tangent
            if tangent is not None:
                total += float((tangent.double() * w.double()).sum())
    return total


def check_forward_ad(ex: Example, settings) -> list[Record]:
    """JVP vs finite differences and vs reverse mode, along random directions."""
    start = time.perf_counter()
    if skip := _requires_backward(ex, "forward-ad", start):
        return skip
    tol = tolerance_for(ex.dtype, ex.case.tolerances)
    gen = check_generator(ex, "forward-ad")
    leaves = tuple(x.detach() for x in ex.leaves())
    reverse, _ = vjp(ex, ex.leaves())
    phi = phi_of(ex)
    xs = ex.reference_inputs()
    problems = []
    for k, pos in enumerate(ex.wrt):
        for _ in range(DIRECTIONS):
            u = torch.randn(leaves[pos].shape, generator=gen, dtype=torch.float64)
            u = u.to(leaves[pos].device)
            try:
                forward = _jvp(ex, leaves, pos, u, ex.cotangents)
            except Exception as exc:
                return [diagnose.semantic_skip(ex, "forward-ad", diagnose.no_jvp_phrase(exc),
                                               time.perf_counter() - start)]
            back = float((reverse[k].double() * u).sum())
            scale = float((reverse[k].double() * u).abs().norm()) + abs(back)
            allowed = DIRECTION_SIGMAS * (tol.rtol + tol.atol) * scale + tol.floor
            if abs(forward - back) <= allowed:
                continue  # two exact derivatives agree (reverse is checked against FD by fd)
            fd = directional(phi, xs, pos, u)  # the referee: which one is off?
            near = allowed + FD_SAFETY * fd.error
            odd = ("forward" if abs(back - fd.value) <= near < abs(forward - fd.value) else
                   "reverse" if abs(forward - fd.value) <= near < abs(back - fd.value) else None)
            problems.append(diagnose.jvp_mismatch_phrase(ex.labels[pos], forward, back,
                                                         fd.value, odd))
            break
    return _record(ex, "forward-ad", problems, start)
