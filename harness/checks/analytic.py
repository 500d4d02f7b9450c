"""Autograd vs the case's analytic gradient, element by element, the analytic side in float64."""

from __future__ import annotations

import time

from harness import diagnose
from harness.autodiff import vjp
from harness.checks.common import (
    analytic_gradient,
    autograd_hints,
    check_generator,
    phi_of,
    rounding_noise,
)
from harness.checks.reference import InputVerdict, compare_with_fd
from harness.inputs import Example
from harness.record import Record
from harness.tolerances import tolerance_for


def check_analytic(ex: Example, settings) -> list[Record]:
    """Autograd's vᵀJ vs the case's grad; on failure, finite differences say who is wrong."""
    start = time.perf_counter()
    if ex.case.grad is None:
        return [Record(case=ex.case.name, check="analytic",
                       dtype=str(ex.dtype).removeprefix("torch."), device=ex.device,
                       status="skip", source=ex.case.source, seed=ex.seed,
                       message="no analytic gradient declared (Case.grad is None)")]
    tol = tolerance_for(ex.dtype, ex.case.tolerances)
    analytic = analytic_gradient(ex)
    grads, missing = vjp(ex, ex.leaves())
    noise = rounding_noise(ex, lambda leaves: vjp(ex, leaves)[0], grads)
    xs = ex.reference_inputs()
    verdicts, allowed = [], []
    for k, pos in enumerate(ex.wrt):
        allow = diagnose.allowance(analytic[k], tol, noise=None if noise is None else noise[k])
        allowed.append(allow)
        m, max_abs, max_rel = diagnose.compare(ex.labels[pos], analytic[k], grads[k], allow,
                                               values=xs[pos])
        verdicts.append(InputVerdict(ex.labels[pos], m, max_abs, max_rel))
    hints = []
    if any(v.mismatch for v in verdicts):
        swap = diagnose.swap_phrase([v.label for v in verdicts], analytic, grads, allowed)
        if swap:
            hints.append(swap)
        phi = phi_of(ex)
        gen = check_generator(ex, "tri")
        ag_vs_fd = not any(v.mismatch for v in compare_with_fd(
            ex, phi, grads, tol, settings, gen, localize=False, noise=noise))
        tol64 = tolerance_for(analytic[0].dtype, ex.case.tolerances)
        an_vs_fd = not any(v.mismatch for v in compare_with_fd(
            ex, phi, analytic, tol64, settings, gen, localize=False))
        hints.append(diagnose.triangulate(False, ag_vs_fd, an_vs_fd))
        if not ag_vs_fd:
            hints.extend(autograd_hints(ex, grads, missing, allowed))
    return [diagnose.verdict_record(ex, "analytic", verdicts, "analytic", "autograd", hints,
                                    time.perf_counter() - start)]
