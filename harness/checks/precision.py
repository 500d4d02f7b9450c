"""Low precision: float16 and bfloat16 gradients against the float64 gradient.

The float64 gradient of the same code, at the same (rounded) inputs and cotangents, is the
reference: the fd check holds it to finite differences, so what this check sees is what
changes with the dtype (a dtype-dependent branch or constant, accumulation in half precision,
a kernel's low-precision path). Two tests, both from the dtype's epsilon and the measured
conditioning of this gradient:

- per element, the table's tolerance plus the measured rounding noise (inputs jittered by a
  few ulps, true change subtracted) plus what rounding the tensors autograd saves moves the
  float64 gradient (sigmoid's backward reads its saved output: near 1, bfloat16 keeps 1 - y
  to one ulp of 1, so a saturated element's gradient is 50% off in any correct kernel, and
  no jitter of a few ulps of x moves that rounding): a wrong element shows;
- on average, the relative error along the reference gradient, <g - r, r> / <r, r>: rounding
  of n independent elements averages down as 1/sqrt(n), a systematic error does not, so a
  gradient 1% off fails even where 1% is within one element's rounding. Its rounding spread
  is measured, not assumed: the same statistic over the jitters' drifts (each the difference
  of two independent roundings, so sqrt(2) times the spread), which also sees rounding shared
  by many elements (one rounded sum under a whole softmax row).
"""

from __future__ import annotations

import torch

from harness.autodiff import carries_graph, vjp
from harness.checks.common import on_demand, rounding_drifts, saved_in
from harness.checks.spec import Check, Finding
from harness.diagnose import contracts, transforms
from harness.diagnose.mismatch import compare
from harness.inputs import Example
from harness.numerics.allowance import allowance
from harness.tolerances import BIAS_FLOOR_ULPS, BIAS_SIGMAS, dtype_name, tolerance_for

BIAS_DRAWS = 6
"""Jitters of the inputs that measure the rounding spread of the mean relative error."""

BIAS_MIN_ELEMENTS = 16
"""The average is tested over at least this many (equally weighted) elements; below, one
element's rounding (and cancellation, as in 6x + 4 near x = -2/3) can look like a bias."""


def _rms_weight(ref: torch.Tensor) -> float:
    """sqrt(sum r^4) / sum r^2: how independent per-element errors of relative size 1 average
    down along ref (1/sqrt(n) for n equal elements)."""
    r2 = ref.double().square()
    return float(r2.square().sum().sqrt() / r2.sum())


def _along(error: torch.Tensor, ref: torch.Tensor) -> float:
    """The mean relative error along ref: <error, ref> / <ref, ref>."""
    return float((error.double() * ref.double()).sum() / ref.double().square().sum())


def average_bias(got: torch.Tensor, ref: torch.Tensor, drifts: list[torch.Tensor],
                 dtype: torch.dtype) -> tuple[float, float] | None:
    """(mean relative error of `got` along `ref`, what rounding allows it), or None when `ref`
    has too few (equally weighted) elements for an average to beat one element's rounding.
    `drifts` are the jitters' differences of two independent roundings (rounding_drifts);
    with none, the allowance is its least (each element's final rounding alone)."""
    if not bool(ref.ne(0).any()) or _rms_weight(ref) > BIAS_MIN_ELEMENTS ** -0.5:
        return None
    bias = _along(got - ref, ref)
    measured = ((sum(_along(d, ref) ** 2 for d in drifts) / (2 * len(drifts))) ** 0.5
                if drifts else 0.0)
    # at least each element's final rounding (uniform in ±unit, so a spread of unit/sqrt(3)),
    # which no jitter moves (a sum of cotangents)
    unit = torch.finfo(dtype).eps / 2
    spread = max(measured, unit / 3**0.5 * _rms_weight(ref))
    return bias, BIAS_SIGMAS * spread + BIAS_FLOOR_ULPS * unit


def check_low_precision(ex: Example, settings) -> Finding:
    """The gradient in float16/bfloat16 against float64, per element and on average."""
    name = dtype_name(ex.dtype)
    if ex.reference_dtype == ex.dtype:
        return Finding(skip=transforms.no_float64_phrase(name))
    try:  # the graph probe runs fn in the low dtype too, which may have no kernel for it
        if not carries_graph(ex):
            return Finding(skip=contracts.NO_GRAPH)
        grads, _ = vjp(ex, ex.leaves())
    except Exception as exc:
        return Finding(skip=transforms.dtype_unsupported_phrase(name, ex.device, exc))
    seen = [v.to(ex.dtype).to(ex.reference_dtype) for v in ex.cotangents]  # as the run saw them

    def gradients(leaves):
        return vjp(ex, leaves, cotangents=seen)[0]

    reference = gradients(ex.leaves(ex.reference_dtype))
    with saved_in(ex.dtype):
        saved_rounded = gradients(ex.leaves(ex.reference_dtype))
    # the jitters' drifts, measured once and only where a verdict needs them
    drifts = on_demand(lambda: list(rounding_drifts(ex, gradients, grads, BIAS_DRAWS)))

    tol = tolerance_for(ex.dtype, ex.case.tolerances)
    problems, notes = [], []
    for k, pos in enumerate(ex.wrt):
        label, ref = ex.labels[pos], reference[k]
        saved_noise = (saved_rounded[k].double() - ref.double()).abs()
        m, _, _ = compare(label, ref, grads[k], allowance(ref, tol, noise=saved_noise))
        if m is not None:
            noise = max(float(d[k].abs().max()) if d[k].numel() else 0.0 for d in drifts())
            m, _, _ = compare(label, ref, grads[k], allowance(ref, tol, noise=saved_noise + noise))
        if m is not None:
            problems.append(transforms.low_precision_element_phrase(name, m))
            continue
        measured = average_bias(grads[k], ref, [], ex.dtype)
        if measured is not None and not abs(measured[0]) <= measured[1]:
            measured = average_bias(grads[k], ref, [d[k] for d in drifts()], ex.dtype)
        if measured is None:
            continue  # too few elements for an average to beat one element's rounding
        bias, allowed = measured
        if not abs(bias) <= allowed:
            problems.append(transforms.low_precision_bias_phrase(name, label, bias, allowed))
        else:
            notes.append(transforms.low_precision_bias_note(label, bias, allowed))
    return Finding(problems=problems, notes=notes)


LOW_PRECISION = Check("low-precision", check_low_precision, dtypes="low-precision", cost=0.008,
                      doc="the bfloat16/float16 gradient against float64, per element and on "
                      "average")
