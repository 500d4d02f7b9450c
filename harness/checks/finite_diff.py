"""Autograd vs central finite differences in float64, with a random cotangent."""

from __future__ import annotations

from harness.autodiff import example_vjp, vjp
from harness.checks.common import (
    analytic_gradient,
    autograd_hints,
    check_generator,
    note_first_order,
    on_demand,
    phi_at_inputs,
    phi_of,
    rounding_noise,
)
from harness.checks.spec import Check, Finding
from harness.diagnose.determinism import raise_if_not_deterministic
from harness.diagnose.mismatch import compare, swap_phrase, triangulate
from harness.inputs import Example
from harness.numerics.allowance import allowance
from harness.numerics.compare import (
    Sweep,
    compare_measuring_rounding_on_doubt,
    compare_with_fd,
)
from harness.tolerances import tolerance_for


def check_finite_diff(ex: Example, settings) -> Finding:
    """vᵀJ from autograd (in the dtype under test) against finite differences of <v, fn>.
    Where the quick pass doubted, or a reading was not trusted, and two calls of fn on the
    same inputs differ, that is the verdict (diagnose.determinism): the readings measured
    fn's own noise."""
    tol = tolerance_for(ex.dtype, ex.case.tolerances)
    grads, missing = example_vjp(ex)
    measure_noise = on_demand(lambda: rounding_noise(ex, lambda leaves: vjp(ex, leaves)[0],
                                                     grads))
    verdicts = compare_measuring_rounding_on_doubt(
        ex, phi_of(ex), grads, tol, Sweep.first_order(settings),
        lambda: check_generator(ex, "fd"), noise=measure_noise, at_inputs=phi_at_inputs(ex))
    if any(v.unreliable for v in verdicts):  # readings not trusted: noise, or kinks?
        raise_if_not_deterministic(ex)  # the runner makes it this row's verdict
    note_first_order(ex, settings, [v.label for v in verdicts if v.mismatch is not None])
    hints = []
    if any(v.mismatch for v in verdicts):
        noise = measure_noise()
        allowed = [allowance(g, tol, noise=None if noise is None else noise[k])
                   for k, g in enumerate(grads)]
        hints = autograd_hints(ex, grads, missing, allowed)
        if all(v.reference is not None for v in verdicts):
            swap = swap_phrase([v.label for v in verdicts],
                                        [v.reference for v in verdicts], grads,
                                        [v.allowed for v in verdicts])
            if swap:
                hints.append(swap)
        if ex.case.grad is not None:
            hints.append(_triangulation(ex, grads, allowed, settings))
    return Finding(verdicts=verdicts, reference="finite differences", checked="autograd",
                   hints=hints)


def _triangulation(ex: Example, grads, allowed, settings) -> str:
    """Bring in the case's analytic gradient to say which of the three sources is off."""
    analytic = analytic_gradient(ex)
    an_vs_ag = all(compare("", a, g, al)[0] is None
                   for a, g, al in zip(analytic, grads, allowed))
    tol64 = tolerance_for(analytic[0].dtype, ex.case.tolerances)
    an_vs_fd = not any(v.mismatch for v in compare_with_fd(
        ex, phi_of(ex), analytic, tol64, Sweep.first_order(settings, localize=False),
        check_generator(ex, "tri")))
    return triangulate(an_vs_ag, False, an_vs_fd)


FD = Check("fd", check_finite_diff, cost=0.004,
           doc="autograd's vjp against central finite differences in float64")
