"""Double backward vs finite differences of the (float64, autograd) first-order gradient.

psi(x) = <w, vᵀJ(x)> for random weights w; its gradient by create_graph double backward must
match central differences of psi. A backward whose own derivative is wrong fails here even
when its first-order values are right.
"""

from __future__ import annotations

import time

import torch

from harness import diagnose
from harness.autodiff import second_order, vjp
from harness.checks.common import (
    check_generator,
    rounding_noise,
    scalarized,
)
from harness.checks.reference import compare_measuring_rounding_on_doubt
from harness.inputs import Example
from harness.record import Record
from harness.tolerances import tolerance_for


def check_second_order(ex: Example, settings) -> list[Record]:
    """d/dx <w, vᵀJ> by double backward (dtype under test) vs finite differences (float64)."""
    start = time.perf_counter()
    dtype_name = str(ex.dtype).removeprefix("torch.")
    skip = dict(case=ex.case.name, check="second-order", dtype=dtype_name, device=ex.device,
                status="skip", seed=ex.seed, source=ex.case.source)
    if ex.case.twice_differentiable is False:
        return [Record(message="case is not twice differentiable (twice_differentiable=False)",
                       **skip)]
    tol = tolerance_for(ex.dtype, ex.case.tolerances)
    gen = check_generator(ex, "second-order")
    weights = [torch.randn(ex.inputs[i].shape, generator=gen, dtype=torch.float64)
               .to(ex.device) for i in ex.wrt]
    second, connected = second_order(ex, ex.leaves(), weights)
    noise = rounding_noise(ex, lambda leaves: second_order(ex, leaves, weights)[0], second)

    def psi(xs):
        leaves = tuple(x.detach().clone().requires_grad_(i in ex.wrt) if x.is_floating_point()
                       else x for i, x in enumerate(xs))
        grads, _ = vjp(ex, leaves)
        terms = [g.detach().double() * w for g, w in zip(grads, weights)]
        return scalarized(terms)

    verdicts = compare_measuring_rounding_on_doubt(
        ex, psi, second, tol, settings, lambda: check_generator(ex, "second-order|fd"),
        noise=noise, full_max=settings.second_order_full_max,
        directions=settings.second_order_directions)
    failed = any(v.mismatch for v in verdicts)
    if failed and not connected and ex.case.twice_differentiable is None:
        return [Record(message=f"not checked: {diagnose.DISCONNECTED_BACKWARD}", **skip)]
    hints = [] if connected else [diagnose.DISCONNECTED_BACKWARD]
    return [diagnose.verdict_record(ex, "second-order", verdicts,
                                    "finite differences of the gradient",
                                    "double backward", hints, time.perf_counter() - start)]
