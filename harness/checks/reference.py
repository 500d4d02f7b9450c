"""A kernel against its reference implementation (Case.reference): values, gradients, second
order and forward mode, the reference's autograd in float64 on the same inputs.

Kernel projects test a fused or hand-written kernel against the eager composition it replaces
with assert_close and hand-tuned atol/rtol per dtype. Here each quantity (the output, the
vector-Jacobian product, the double-backward product, the Jacobian-vector product) of `fn` in
the dtype under test is held, element by element, to the same quantity of the reference's
autograd in float64, at the same (rounded) inputs and cotangents, with the dtype's tolerance
plus the measured rounding noise: the difference between the kernel's change and the
reference's change when the inputs move by a few ulps (the true change cancels; a bug does
not excuse itself). In float16/bfloat16, where one element's rounding hides a 1% error, the
mean relative error along the reference's values is tested too (precision.average_bias).

Where fn runs in float64 and a gradient disagrees, finite differences of fn say which side is
wrong. Where fn has no second derivative or no forward-mode formula, that part is a skip that
says so, not a failure: the reference family compares what both support.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch
import torch.autograd.forward_ad as fwAD

from harness.autodiff import second_order, vjp
from harness.checks.common import check_generator, gaussian, phi_of, rounding_drifts, saved_in
from harness.checks.precision import BIAS_DRAWS, average_bias
from harness.checks.spec import Check, Finding
from harness.checks.verdict import InputVerdict
from harness.diagnose import transforms
from harness.diagnose.mismatch import Mismatch, compare
from harness.inputs import Example, as_outputs
from harness.numerics.allowance import allowance, element_power
from harness.numerics.baseline import baseline
from harness.numerics.compare import Sweep, compare_with_fd
from harness.tolerances import (
    BASELINE_RATIO,
    FLOAT8,
    coarser,
    dtype_name,
    half_or_float8,
    tolerance_for,
)

Compute = Callable[[tuple[torch.Tensor, ...]], list[torch.Tensor]]


def _reference_example(ex: Example) -> Example:
    return replace(ex, fn=ex.case.reference)


def _ran_note(ex: Example) -> str:
    return (f"fn ran in {dtype_name(ex.dtype)} on {ex.device}, the reference in "
            f"{dtype_name(ex.reference_dtype)} on {ex.device}, on the same inputs")


def _bias_mismatch(label: str, got, ref, allowed, bias: float, limit: float,
                   values, drifts, dtype) -> Mismatch:
    """Every element within its allowance, the average not: the worst element named, the
    average as the pattern (split by the input's sign when one side carries it all)."""
    got, ref = got.detach().double().cpu(), ref.detach().double().cpu()
    diff = (got - ref).abs()
    flat = int((diff / allowed.double().cpu().expand_as(diff).clamp_min(1e-300)).argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), ref.shape))
    where = ""
    if values is not None and values.shape == ref.shape:
        x = values.detach().double().cpu()
        sides = {}
        for name, mask in (("negative", x < 0), ("positive", x > 0)):
            if bool(mask.any()) and bool((~mask).any()):
                part = average_bias(got[mask], ref[mask], [d.cpu()[mask] for d in drifts], dtype)
                sides[name] = part
        failing = [n for n, p in sides.items() if p is not None and abs(p[0]) > p[1]]
        passing = [n for n, p in sides.items() if p is not None and abs(p[0]) <= p[1]]
        if len(failing) == 1 and passing:
            where = f" where the input is {failing[0]}"
    pattern = (f"off by about a factor {1 + bias:.4g} on average{where} (mean relative error "
               f"along the reference {bias:+.2%}, rounding allows ±{limit:.2%}); every "
               f"element is within the {dtype_name(dtype)} allowance, so only the average "
               "shows it")
    expected, actual = float(ref.flatten()[flat]), float(got.flatten()[flat])
    return Mismatch(label=label, count=ref.numel(), total=ref.numel(), index=index,
                    expected=expected, actual=actual, abs_err=abs(actual - expected),
                    rel_err=abs(actual - expected) / max(abs(expected), 1e-300),
                    allowed=float(allowed.double().cpu().expand_as(diff).flatten()[flat]),
                    rest_err=math.nan, pattern=pattern, on_average=f"{bias:+.2%}")


def _baseline_mismatch(label: str, got, ref, allowed, b, dtype) -> Mismatch:
    """Every element within its allowance, but fn further from the float64 reference than
    `b.ratio` times the reference computed in the same dtype: the worst element named."""
    got, ref = got.detach().double().cpu(), ref.detach().double().cpu()
    diff = (got - ref).abs()
    flat = int(diff.flatten().argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), ref.shape))
    expected, actual = float(ref.flatten()[flat]), float(got.flatten()[flat])
    name = dtype_name(dtype)
    return Mismatch(label=label, count=ref.numel(), total=ref.numel(), index=index,
                    expected=expected, actual=actual, abs_err=abs(actual - expected),
                    rel_err=abs(actual - expected) / max(abs(expected), 1e-300),
                    allowed=float(allowed.double().cpu().expand_as(diff).flatten()[flat]),
                    rest_err=b.error, pattern=transforms.baseline_pattern(name, b),
                    over_baseline=(f"{transforms.baseline_bar(name, b)}), above the "
                                   f"{b.ratio:g}x allowed"))


def _in_dtype(ex: Example, of_reference: Compute, got: list, notes: list):
    """The reference computed in the dtype under test (its leaves in it), each tensor rounded
    to fn's where fn's is coarser (a kernel that returns float8); a reference that cannot take
    float8 inputs runs in float32 on the same float8 values (emulated float8, as torchao and
    TransformerEngine test theirs). None, with a note, where it does not run."""
    name = dtype_name(ex.dtype)
    try:
        found = of_reference(ex.leaves())
    except Exception as exc:
        if ex.dtype not in FLOAT8:
            notes.append(transforms.no_baseline_phrase(name, exc))
            return None
        try:
            found = of_reference(ex.leaves(torch.float32))
        except Exception as again:
            notes.append(transforms.no_baseline_phrase(name, again))
            return None
        notes.append(transforms.emulated_baseline_phrase(name, exc))
    return [r.detach().to(coarser(r.dtype, g.dtype)) for r, g in zip(found, got)]


def _baseline_measured(ex: Example, precision: torch.dtype) -> bool:
    """Whether a tensor compared in `precision` is measured against the reference computed in
    it: below float32 always, in float32 where the case asks (Case.baseline_float32)."""
    return half_or_float8(precision) or (precision == torch.float32
                                         and ex.case.baseline_float32)


def _baseline_ratio(ex: Example, precision: torch.dtype) -> float | None:
    """The ratio the rule enforces there: the case's, or BASELINE_RATIO in float8 and float32
    (None: bfloat16/float16 without one, measured and reported only)."""
    if precision in (*FLOAT8, torch.float32):
        return ex.case.baseline_ratio or BASELINE_RATIO
    return ex.case.baseline_ratio


def held_to_reference(ex: Example, labels: list[str], of_fn: Compute, of_reference: Compute,
                      values: list | None = None) -> tuple[list[InputVerdict], list[str]]:
    """Each tensor of `of_fn(leaves in the dtype under test)` against `of_reference(float64
    leaves)`, per element with the tolerance of the coarser of the dtype under test and the
    tensor's own (a float8 output), plus measured noise; below float32 (and in float32 where
    the case asks) also against the reference computed in that dtype
    (harness.numerics.baseline), and in half precision on average. The verdicts, and notes
    with the baseline's figures."""
    got = of_fn(ex.leaves())
    want = of_reference(ex.leaves(ex.reference_dtype))
    precisions = [coarser(ex.dtype, g.dtype) for g in got]
    # float8 inputs are not jittered: an ulp is 6-12%, so a jitter either rounds back or moves
    # a whole ulp, and a kernel off by a factor would pass that factor off as noise
    low = ex.dtype != ex.reference_dtype and ex.dtype not in FLOAT8
    drifts = list(rounding_drifts(ex, of_fn, got, BIAS_DRAWS, of_reference)) if low else []
    rounded, in_dtype, notes = [], None, []
    if ex.dtype in (torch.float16, torch.bfloat16):
        with saved_in(ex.dtype):  # what rounding the tensors autograd saves does to the reference
            rounded = of_reference(ex.leaves(ex.reference_dtype))
    if any(_baseline_measured(ex, p) for p in precisions):
        in_dtype = _in_dtype(ex, of_reference, got, notes)
    verdicts = []
    for k, label in enumerate(labels):
        ref, g, precision = want[k].detach().double(), got[k].detach(), precisions[k]
        tol = tolerance_for(precision, ex.case.tolerances)
        noise = None
        if drifts:
            noise = torch.tensor(max(float(d[k].abs().max()) if d[k].numel() else 0.0
                                     for d in drifts), dtype=torch.float64)
            if rounded:
                noise = noise + (rounded[k].detach().double() - ref).abs().cpu()
        allowed = allowance(ref, tol, noise=noise)
        at = None if values is None else values[k]
        m, max_abs, max_rel = compare(label, ref, g, allowed, values=at)
        if m is None and rounded:
            measured = average_bias(g.double(), ref, [d[k] for d in drifts], ex.dtype)
            if measured is not None and abs(measured[0]) > measured[1]:
                m = _bias_mismatch(label, g, ref, allowed, *measured, at,
                                   [d[k].double() for d in drifts], ex.dtype)
        if in_dtype is not None and _baseline_measured(ex, precision):
            b = baseline(g, in_dtype[k], ref, precision, _baseline_ratio(ex, precision))
            notes.append(transforms.baseline_note(label, dtype_name(precision), b))
            if m is None and not b.holds:
                m = _baseline_mismatch(label, g, ref, allowed, b, precision)
        verdicts.append(InputVerdict(label, m, max_abs, max_rel, reference=ref,
                                     allowed=allowed, detects=element_power(ref, g, allowed),
                                     checked=g.double(), values=at))
    return verdicts, notes


def _output_labels(count: int) -> list[str]:
    return ["output"] if count == 1 else [f"output {i}" for i in range(count)]


def _outputs(ex: Example) -> Compute:
    def outputs(leaves):
        with torch.no_grad():
            return [o.detach() for o in as_outputs(ex.fn(*leaves))]

    return outputs


def _gradients(ex: Example, seen) -> Compute:
    return lambda leaves: vjp(ex, leaves, cotangents=seen)[0]


def _who_is_wrong(ex: Example, grads, reference, settings) -> list[str]:
    """Where fn runs in float64: which side finite differences of fn agree with."""
    if ex.dtype != ex.reference_dtype:
        return [f"finite differences not consulted: fn ran in {dtype_name(ex.dtype)} (the fd "
                "family checks fn's own gradient where it runs in float64)"]
    phi, gen = phi_of(ex), check_generator(ex, "kernel-tri")
    sweep = Sweep.first_order(settings, localize=False)
    tol = tolerance_for(ex.dtype, ex.case.tolerances)
    fn_ok = not any(v.mismatch for v in compare_with_fd(ex, phi, grads, tol, sweep, gen))
    ref_ok = not any(v.mismatch for v in compare_with_fd(ex, phi, reference, tol, sweep, gen))
    return [transforms.kernel_triangulation(fn_ok, ref_ok)]


def check_reference(ex: Example, settings) -> Finding:
    """fn's output and vᵀJ in the dtype under test against the reference's in float64."""
    ref_ex = _reference_example(ex)
    out_fn = _outputs(ex)
    try:
        out_dtypes = [o.dtype for o in out_fn(ex.leaves())]
    except Exception as exc:
        return Finding(skip=transforms.dtype_unsupported_phrase(dtype_name(ex.dtype),
                                                                ex.device, exc))
    count = len(out_dtypes)
    verdicts, notes = held_to_reference(ex, _output_labels(count), out_fn, _outputs(ref_ex))
    # the cotangents as fn's backward sees them: autograd rounds each to its output's dtype
    seen = [v.to(coarser(ex.dtype, dtype)).to(ex.reference_dtype)
            for v, dtype in zip(ex.cotangents, out_dtypes)]
    xs = ex.reference_inputs()
    labels = [ex.labels[i] for i in ex.wrt]
    more, more_notes = held_to_reference(ex, labels, _gradients(ex, seen),
                                         _gradients(ref_ex, seen), values=[xs[i] for i in ex.wrt])
    verdicts, notes = verdicts + more, notes + more_notes
    hints = []
    if any(v.mismatch for v in verdicts[count:]):
        hints = _who_is_wrong(ex, [v.checked for v in verdicts[count:]],
                              [v.reference for v in verdicts[count:]], settings)
    return Finding(verdicts=tuple(verdicts), reference="reference", checked="fn", hints=hints,
                   notes=(_ran_note(ex), *dict.fromkeys(notes)))


def check_reference_second_order(ex: Example, settings) -> Finding:
    """d/dx <w, vᵀJ> by double backward, fn against the reference."""
    ref_ex = _reference_example(ex)
    gen = check_generator(ex, "kernel-2")
    xs = ex.reference_inputs()
    weights = [gaussian(xs[i].shape, gen, xs[i].device) for i in ex.wrt]
    _, connected, _ = second_order(ex, ex.leaves(), weights)
    if not connected:
        return Finding(skip=transforms.KERNEL_NO_SECOND_ORDER)
    labels = [ex.labels[i] for i in ex.wrt]
    verdicts, notes = held_to_reference(
        ex, labels, lambda leaves: second_order(ex, leaves, weights)[0],
        lambda leaves: second_order(ref_ex, leaves, weights)[0], values=[xs[i] for i in ex.wrt])
    return Finding(verdicts=tuple(verdicts), reference="reference", checked="fn",
                   notes=(_ran_note(ex), *dict.fromkeys(notes)))


def _tangents(ex: Example, directions: list[torch.Tensor]) -> Compute:
    """J u per checked input (that input moving along its direction u), every output's."""

    def tangents(leaves):
        found = []
        leaves = tuple(x.detach() for x in leaves)
        for k, pos in enumerate(ex.wrt):
            with fwAD.dual_level():
                duals = [fwAD.make_dual(x, directions[k].to(x.dtype)) if i == pos else x
                         for i, x in enumerate(leaves)]
                for out in as_outputs(ex.fn(*duals)):
                    t = fwAD.unpack_dual(out).tangent
                    found.append(torch.zeros_like(out) if t is None else t.detach())
        return found

    return tangents


def check_reference_forward_ad(ex: Example, settings) -> Finding:
    """J u by forward AD (a custom Function's jvp), fn against the reference."""
    ref_ex = _reference_example(ex)
    gen = check_generator(ex, "kernel-fwd")
    xs = ex.reference_inputs()
    directions = [gaussian(xs[i].shape, gen, xs[i].device) for i in ex.wrt]
    of_fn, of_ref = _tangents(ex, directions), _tangents(ref_ex, directions)
    for side, compute, leaves in (("fn", of_fn, ex.leaves()),
                                  ("the reference", of_ref, ex.leaves(ex.reference_dtype))):
        try:
            count = len(compute(leaves)) // max(len(ex.wrt), 1)
        except Exception as exc:
            return Finding(skip=transforms.kernel_no_jvp_phrase(side, exc))
    outs = _output_labels(count)
    labels = [f"{o} along u on {ex.labels[i]}" for i in ex.wrt for o in outs]
    verdicts, notes = held_to_reference(ex, labels, of_fn, of_ref)
    return Finding(verdicts=tuple(verdicts), reference="reference", checked="fn",
                   notes=(_ran_note(ex), *dict.fromkeys(notes)))


_SUPPORTS = dict(applies_to="case", dtypes="with-low-precision", needs_case="reference")

REFERENCE = Check(
    "reference", check_reference, cost=0.02, title="reference check",
    **{**_SUPPORTS, "dtypes": "with-float8"},
    doc="fn's output and gradient against its reference implementation's (Case.reference) "
        "autograd in float64, with the dtype's tolerance and measured rounding")
REFERENCE_SECOND_ORDER = Check(
    "reference-second-order", check_reference_second_order, cost=0.02, second_order=True,
    **_SUPPORTS, doc="fn's double backward against the reference's, in float64")
REFERENCE_FORWARD_AD = Check(
    "reference-forward-ad", check_reference_forward_ad, cost=0.02, forward_mode=True,
    **_SUPPORTS,
    doc="fn's forward-mode derivative (jvp) against the reference's, in float64")
