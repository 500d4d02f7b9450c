"""Autograd vs the case's analytic gradient, element by element, the analytic side in float64."""

from __future__ import annotations

from harness.autodiff import example_vjp, vjp
from harness.checks.common import (
    analytic_gradient,
    autograd_hints,
    check_generator,
    phi_of,
    rounding_noise,
)
from harness.checks.spec import Check, Finding
from harness.checks.verdict import InputVerdict
from harness.diagnose.mismatch import compare, swap_phrase, triangulate
from harness.inputs import Example
from harness.numerics.allowance import allowance, element_power
from harness.numerics.compare import Sweep, compare_with_fd
from harness.tolerances import tolerance_for


def _verdicts(ex: Example, expected, actual, allowed) -> list[InputVerdict]:
    xs = ex.reference_inputs()
    verdicts = []
    for k, pos in enumerate(ex.wrt):
        m, max_abs, max_rel = compare(ex.labels[pos], expected[k], actual[k],
                                               allowed[k], values=xs[pos])
        verdicts.append(InputVerdict(ex.labels[pos], m, max_abs, max_rel,
                                     reference=expected[k], allowed=allowed[k],
                                     detects=element_power(expected[k], actual[k], allowed[k]),
                                     checked=actual[k], values=xs[pos]))
    return verdicts


def check_analytic(ex: Example, settings) -> Finding:
    """Autograd's vᵀJ vs the case's grad; on failure, finite differences say who is wrong.

    For a scalar output both sides are shown per unit cotangent, so values read like the
    gradient itself (22 at x = 3, not 22 times the random cotangent).
    """
    if ex.case.grad is None:
        return Finding(skip="no analytic gradient declared (Case.grad is None)")
    tol = tolerance_for(ex.dtype, ex.case.tolerances)
    analytic = analytic_gradient(ex)
    grads, missing = example_vjp(ex)
    unit = float(ex.cotangents[0]) if ex.scalar_output else 1.0
    shown_an = [a / unit for a in analytic]
    shown_ag = [g.double() / unit for g in grads]

    def compared(noise):
        allowed = [allowance(a, tol, noise=None if noise is None else noise[k])
                   for k, a in enumerate(analytic)]
        shown_allowed = [a / abs(unit) for a in allowed]
        return allowed, shown_allowed, _verdicts(ex, shown_an, shown_ag, shown_allowed)

    noise = None  # autograd's rounding noise: measured only when the verdict needs it
    allowed, shown_allowed, verdicts = compared(noise)
    if any(v.mismatch for v in verdicts) and (
            noise := rounding_noise(ex, lambda leaves: vjp(ex, leaves)[0], grads)) is not None:
        allowed, shown_allowed, verdicts = compared(noise)
    reference, checked, hints = "analytic", "autograd", []
    if any(v.mismatch for v in verdicts):
        swap = swap_phrase([v.label for v in verdicts], analytic, grads, allowed)
        if swap:
            hints.append(swap)
        phi = phi_of(ex)
        gen = check_generator(ex, "tri")
        ag_vs_fd = not any(v.mismatch for v in compare_with_fd(
            ex, phi, grads, tol, Sweep.first_order(settings, localize=False), gen, noise))
        tol64 = tolerance_for(analytic[0].dtype, ex.case.tolerances)
        an_vs_fd = not any(v.mismatch for v in compare_with_fd(
            ex, phi, analytic, tol64, Sweep.first_order(settings, localize=False), gen))
        hints.append(triangulate(False, ag_vs_fd, an_vs_fd))
        if not ag_vs_fd:
            hints.extend(autograd_hints(ex, grads, missing, allowed))
        elif not an_vs_fd:
            # The formula is the odd one out: measure it against autograd, the trusted side,
            # so its pattern reads "3 times autograd's", not "autograd is 1/3 of it".
            verdicts = _verdicts(ex, shown_ag, shown_an, shown_allowed)
            reference, checked = "autograd", "analytic"
    return Finding(verdicts=verdicts, reference=reference, checked=checked, hints=hints)


ANALYTIC = Check("analytic", check_analytic, cost=0.02,
                 doc="autograd against the case's analytic gradient, element by element")
