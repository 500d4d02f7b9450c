"""Forward mode (gradcheck's check_forward_ad): the JVP against reverse mode, with finite
differences as the referee.

For random directions u (per checked input) and the case's cotangent w: <w, J u> from forward
AD (dual tensors, so a custom Function's `jvp` staticmethod is what runs) must match the
reverse-mode <Jᵀw, u> (which the fd check holds to finite differences). Where they disagree,
the float64 central difference d/dt <w, f(x + t u)> says which one is off. A Function with no
jvp is a skip that says how to add one.

Low precision. Below float64 both modes round, and where an intermediate saturates or
cancels (softmax(30 x) in float32: y = 1 exactly) they round differently, by more than an
allowance sized for the result: a correct softmax's forward mode read 4.30e-05 where reverse
mode and finite differences read 3.60e-05, and forward-ad or fwd-over-rev failed 4 to 7 of 20
seeds. Each mode's rounding is measured as its distance from the same code run in float64, and
the two modes may differ by NOISE_SAFETY times the sum. A jvp wrong in every dtype still
shows (the float64 run disagrees as much); one wrong in float32 alone, by no more than that,
does not: this family then holds the jvp in float64 only.
"""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as fwAD

from harness.autodiff import example_vjp, vjp
from harness.checks.common import (
    MEASURED_NOISE_ULPS,
    check_generator,
    gaussian,
    on_demand,
    phi_of,
)
from harness.checks.spec import Check, Finding
from harness.diagnose import transforms
from harness.inputs import Example, as_outputs
from harness.numerics.differences import directional
from harness.tolerances import DIRECTION_SIGMAS, FD_SAFETY, NOISE_SAFETY, tolerance_for

DIRECTIONS = 2


def _jvp(ex: Example, leaves, pos: int, u: torch.Tensor, weights) -> float:
    """<w, J u> by forward AD, with input `pos` moving along u."""
    with fwAD.dual_level():
        duals = [fwAD.make_dual(x, u.to(x.dtype)) if i == pos else x
                 for i, x in enumerate(leaves)]
        outs = as_outputs(ex.fn(*duals))
        total = 0.0
        for out, w in zip(outs, weights):
            tangent = fwAD.unpack_dual(out).tangent
            if tangent is not None:
                total += float((tangent.double() * w.double()).sum())
    return total


def check_forward_ad(ex: Example, settings) -> Finding:
    """JVP vs finite differences and vs reverse mode, along random directions."""
    tol = tolerance_for(ex.dtype, ex.case.tolerances)
    gen = check_generator(ex, "forward-ad")
    leaves = tuple(x.detach() for x in ex.leaves())
    reverse, _ = example_vjp(ex)
    reverse64 = on_demand(lambda: vjp(ex, ex.leaves(ex.reference_dtype))[0])
    problems = []
    for k, pos in enumerate(ex.wrt):
        for _ in range(DIRECTIONS):
            u = gaussian(leaves[pos].shape, gen, leaves[pos].device)
            try:
                forward = _jvp(ex, leaves, pos, u, ex.cotangents)
            except Exception as exc:
                return Finding(skip=transforms.no_jvp_phrase(exc))
            back = float((reverse[k].double() * u).sum())
            scale = float((reverse[k].double() * u).abs().norm()) + abs(back)
            allowed = DIRECTION_SIGMAS * (tol.rtol + tol.atol) * scale + tol.floor
            if abs(forward - back) <= allowed:
                continue  # two exact derivatives agree (reverse is checked against FD by fd)
            if ex.dtype != ex.reference_dtype:  # each mode's rounding (module doc)
                exact = tuple(x.detach() for x in ex.leaves(ex.reference_dtype))
                rounding = (abs(forward - _jvp(ex, exact, pos, u, ex.cotangents))
                            + abs(back - float((reverse64()[k].double() * u).sum())))
                if abs(forward - back) <= allowed + NOISE_SAFETY * rounding:
                    continue
            fd = directional(phi_of(ex), ex.reference_inputs(), pos, u)  # the referee
            near = allowed + FD_SAFETY * fd.error
            odd = ("forward" if abs(back - fd.value) <= near < abs(forward - fd.value) else
                   "reverse" if abs(forward - fd.value) <= near < abs(back - fd.value) else None)
            problems.append(transforms.jvp_mismatch_phrase(ex.labels[pos], forward, back,
                                                         fd.value, odd))
            break
    return Finding(problems=problems)


def _fwd_over_rev_pair(ex: Example, base, pos: int, u, weights):
    """(<r, H u> by forward AD through the backward, the same by double backward, the scale
    of the terms); the double-backward value is None where the backward builds no graph."""
    with fwAD.dual_level():
        leaves = [x.clone().requires_grad_(i in ex.wrt) if x.is_floating_point() else x
                  for i, x in enumerate(base)]
        leaves[pos] = fwAD.make_dual(leaves[pos], u)
        grads, _ = vjp(ex, tuple(leaves), create_graph=True)
        tangents = [fwAD.unpack_dual(g).tangent for g in grads]  # carry a graph
        forward = sum(float((t.detach().double() * r.double()).sum())
                      for t, r in zip(tangents, weights) if t is not None)
    leaves = tuple(x.clone().requires_grad_(i in ex.wrt) if x.is_floating_point() else x
                   for i, x in enumerate(base))
    grads, _ = vjp(ex, leaves, create_graph=True)
    psi = sum((g * r).sum() for g, r in zip(grads, weights))
    second = torch.autograd.grad(psi, leaves[pos], allow_unused=True)[0] \
        if psi.requires_grad else None
    if second is None:
        return forward, None, 0.0
    back = float((second.double() * u).sum())
    scale = float((second.double() * u).abs().norm()) + abs(back) + abs(forward)
    # where the Hessian is tiny beside the gradient (normalize near 0), the rounding of the
    # gradient sets the bar: its size per unit of input
    first = sum(float((g.detach().double() * r).abs().sum()) for g, r in zip(grads, weights))
    if u.numel():
        scale += first * float(u.abs().max()) / max(1.0, float(base[pos].abs().max()))
    return forward, back, scale


def check_fwd_over_rev(ex: Example, settings) -> Finding:
    """Forward-over-reverse (gradcheck's check_fwd_over_rev): the tangent of the gradient,
    <r, H u> with forward AD pushed through the backward, against reverse-over-reverse
    (double backward), along a random direction per input. On a disagreement, both are
    evaluated again at inputs a few ulps away: what moves there is rounding (cancellation,
    as in normalize near 0), and it is allowed."""
    tol = tolerance_for(ex.dtype, ex.case.tolerances)
    gen = check_generator(ex, "fwd-over-rev")
    base = tuple(x.detach() for x in ex.leaves())
    weights = [gaussian(base[i].shape, gen, base[i]) for i in ex.wrt]
    problems = []
    for pos in ex.wrt:
        u = gaussian(base[pos].shape, gen, base[pos])
        try:
            forward, back, scale = _fwd_over_rev_pair(ex, base, pos, u, weights)
        except Exception as exc:
            return Finding(skip=transforms.no_jvp_phrase(exc))
        if back is None:
            continue  # a backward with no graph: the second-order check says so
        allowed = DIRECTION_SIGMAS * (tol.rtol + tol.atol) * scale + tol.floor
        if abs(forward - back) <= allowed:
            continue
        moved = list(base)
        r = gaussian(base[pos].shape, gen, base[pos])
        moved[pos] = base[pos] * (1 + MEASURED_NOISE_ULPS * torch.finfo(base[pos].dtype).eps * r)
        forward2, back2, _ = _fwd_over_rev_pair(ex, tuple(moved), pos, u, weights)
        noise = abs(forward2 - forward) + abs((back2 if back2 is not None else back) - back)
        if ex.dtype != ex.reference_dtype:  # module doc: low precision
            exact = tuple(x.detach() for x in ex.leaves(ex.reference_dtype))
            forward64, back64, _ = _fwd_over_rev_pair(ex, exact, pos, u.double(),
                                                      [w.double() for w in weights])
            noise += abs(forward - forward64) + (abs(back - back64) if back64 is not None
                                                 else 0.0)
        if not abs(forward - back) <= allowed + NOISE_SAFETY * noise:
            problems.append(transforms.fwd_over_rev_phrase(ex.labels[pos], forward, back))
            break
    return Finding(problems=problems)


FORWARD_AD = Check("forward-ad", check_forward_ad, needs_graph=True, cost=0.04, forward_mode=True,
                   doc="forward mode's jvp against reverse mode, finite differences as referee")
FWD_OVER_REV = Check("fwd-over-rev", check_fwd_over_rev, needs_graph=True, second_order=True,
                     cost=0.006, forward_mode=True,
                     doc="forward AD through the backward against double backward")
