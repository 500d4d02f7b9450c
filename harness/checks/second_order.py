"""Double backward vs finite differences of the (float64, autograd) first-order gradient.

psi(x) = <w, vᵀJ(x)> for random weights w; its gradient by create_graph double backward must
match central differences of psi. A backward whose own derivative is wrong fails here even
when its first-order values are right. Where that agrees, the double backward's derivative
with respect to the incoming gradient v is checked too (checks.cotangent): gradgradcheck
differentiates the backward with respect to both.
"""

from __future__ import annotations

from dataclasses import replace

from harness.autodiff import example_vjp, second_order, vjp
from harness.checks.common import (
    check_generator,
    first_order_noted,
    gaussian,
    on_demand,
    phi_of,
    rounding_noise,
    scalarized,
)
from harness.checks.cotangent import cotangent_verdicts, incoming_leaves
from harness.checks.spec import Check, Finding
from harness.inputs import Example, as_outputs
from harness.numerics.compare import Sweep, compare_measuring_rounding_on_doubt
from harness.tolerances import tolerance_for


def check_second_order(ex: Example, settings) -> Finding:
    """d/dx <w, vᵀJ> by double backward (dtype under test) vs finite differences (float64)."""
    tol = tolerance_for(ex.dtype, ex.case.tolerances)
    gen = check_generator(ex, "second-order")
    weights = [gaussian(ex.inputs[i].shape, gen, ex.device) for i in ex.wrt]
    leaves = ex.leaves()
    try:
        outs = as_outputs(ex.fn(*leaves))
        incoming = incoming_leaves(ex, outs)
        second, connected, over_v = second_order(ex, leaves, weights, outs, incoming)
    except RuntimeError as exc:
        op = builtin_without_double_backward(exc)
        if op is None or ex.case.twice_differentiable:
            raise
        return Finding(skip=f"not checked: torch has no double backward for {op}, a built-in "
                       "operator this code calls (torch's limit, not this code's)")
    noise = on_demand(lambda: rounding_noise(
        ex, lambda at: second_order(ex, at, weights)[0], second))

    def psi(xs):
        leaves = tuple(x.detach().clone().requires_grad_(i in ex.wrt) if x.is_floating_point()
                       else x for i, x in enumerate(xs))
        grads, _ = vjp(ex, leaves)
        terms = [g.detach().double() * w for g, w in zip(grads, weights)]
        return scalarized(terms)

    first_order_wrong = []

    def on_doubt(sweep: Sweep, quick) -> Sweep | None:
        """Where the gradient itself is wrong, second order fails with it: locating the
        same wrong elements again (group testing through double backward, the costliest
        probes of the net) would only repeat the fd row, and where every input the quick
        pass doubts has a wrong gradient, re-measuring its readings too."""
        first_order_wrong.extend(_first_order_wrong(ex, settings))
        if not first_order_wrong:
            return sweep
        doubted = {v.label for v in quick if v.mismatch is not None}
        return None if doubted <= set(first_order_wrong) else replace(sweep, localize=False)

    verdicts = compare_measuring_rounding_on_doubt(
        ex, psi, second, tol, Sweep.second_order(settings),
        lambda: check_generator(ex, "second-order|fd"), noise=noise, on_doubt=on_doubt)
    failed = any(v.mismatch for v in verdicts)
    marked = failed and not connected and marked_once_differentiable(ex, outs, leaves,
                                                                     incoming)
    if marked and ex.case.twice_differentiable is None:
        return Finding(skip=f"not checked: {MARKED_ONCE}")
    hints = [] if connected else [MARKED_ONCE_DEMANDED if marked
                                  else SILENTLY_NOT_DIFFERENTIABLE]
    reference, checked = "finite differences of the gradient", "double backward"
    if not failed and connected:
        over_v = cotangent_verdicts(ex, outs, leaves, incoming, over_v, weights, tol,
                                    check_generator(ex, "second-order|v"))
        verdicts = [*verdicts, *over_v]
        if any(v.mismatch for v in over_v):
            reference, checked = REFERENCE_OVER_V, "double backward's d/d(grad_output)"
            wrong = _first_order_wrong(ex, settings)
            hints.append(not_linear_phrase(wrong) if wrong else IGNORES_INCOMING)
    if failed and first_order_wrong:
        hints.append(f"the first-order gradient of {', '.join(first_order_wrong)} is wrong "
                     "too (the fd row says where), so the second-order elements were not "
                     "located, and where only such inputs disagree their readings were not "
                     "re-measured: fix the first order, then this check names them")
    return Finding(verdicts=verdicts, reference=reference, checked=checked, hints=hints)


MARKED_ONCE = ("the backward is marked @once_differentiable: torch raises on a double "
               "backward through it instead of returning values, so there is none to check")
MARKED_ONCE_DEMANDED = (
    "the backward is marked @once_differentiable, so torch gives no double backward, and the "
    "case demands one (twice_differentiable=True): declare twice_differentiable=False, or "
    "write a backward torch can differentiate")
SILENTLY_NOT_DIFFERENTIABLE = (
    "the backward is not differentiable and says nothing: its result has no graph back to the "
    "inputs (computed under no_grad, from .detach()ed tensors or numpy), so a double backward "
    "through it returns zeros or drops terms without an error, where finite differences of "
    "the gradient are not zero; mark it @once_differentiable (torch then raises instead), "
    "declare twice_differentiable=False if nothing differentiates through it, or compute it "
    "with differentiable torch ops")


def marked_once_differentiable(ex: Example, outs, leaves, incoming) -> bool:
    """Whether the first backward's result carries torch's error node for a backward marked
    @once_differentiable (what it returns where its incoming gradient requires grad)."""
    grads, _ = vjp(ex, leaves, cotangents=incoming, create_graph=True, outs=outs)
    return any(g.grad_fn is not None and g.grad_fn.name() == "torch::autograd::Error"
               for g in grads)


REFERENCE_OVER_V = "the first backward's values along it"
IGNORES_INCOMING = (
    "the double backward does not follow the incoming gradient (grad_output): the backward "
    "detaches it or computes with it outside autograd (.detach(), .data, numpy, a no_grad "
    "block), so whatever differentiates through this backward (a gradient penalty, a "
    "Hessian-vector product, gradgradcheck) gets wrong values; compute the backward from "
    "grad_output with differentiable torch ops, or mark it @once_differentiable so torch "
    "raises instead")


def not_linear_phrase(wrong: list[str]) -> str:
    return (f"the first-order gradient of {', '.join(wrong)} is wrong (the fd row says where): "
            "this comparison holds the double backward to a backward linear in its incoming "
            "gradient, as every correct one is, so it fails with it (gradgradcheck, which "
            "assumes nothing of the kind, can pass a backward that ignores grad_output); fix "
            "the first order, then this check says whether the double backward follows "
            "grad_output")


def _first_order_wrong(ex: Example, settings) -> list[str]:
    """The checked inputs whose first-order gradient fails a verdict-only fd comparison,
    with the fd family's allowance (its rounding noise in low precision included): the fd
    family's own verdict where it ran on this example before."""
    if (noted := first_order_noted(ex, settings)) is not None:
        return noted
    tol = tolerance_for(ex.dtype, ex.case.tolerances)
    grads, _ = example_vjp(ex)
    verdicts = compare_measuring_rounding_on_doubt(
        ex, phi_of(ex), grads, tol, Sweep.first_order(replace(settings, verdict_only=True)),
        lambda: check_generator(ex, "fd"),
        noise=on_demand(lambda: rounding_noise(ex, lambda leaves: vjp(ex, leaves)[0], grads)))
    return [v.label for v in verdicts if v.mismatch is not None]


def builtin_without_double_backward(exc: Exception) -> str | None:
    """The aten operator named by torch's "derivative for aten::X is not implemented", the
    error of a built-in backward that is differentiable once only (flash attention's)."""
    text = str(exc)
    if "derivative for aten::" not in text or "is not implemented" not in text:
        return None
    return text.split("derivative for ", 1)[1].split(" is not implemented", 1)[0]


SECOND_ORDER = Check("second-order", check_second_order, second_order=True, cost=0.008,
                     doc="double backward against finite differences of the gradient")
