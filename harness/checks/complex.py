"""Complex inputs and outputs: gradients follow torch's convention, checked as real pairs.

torch's gradient of a real loss L of complex z = x + iy is dL/dx + i dL/dy (the conjugate
Wirtinger derivative, times 2), and a complex output's cotangent v = a + ib stands for the
real loss Re <v, f> = <a, Re f> + <b, Im f>. Both say the same thing in the real view:
torch.view_as_real of every complex input and output. So the check runs the fd check on that
view: finite differences perturb real and imaginary parts separately, and a wrong gradient
is named at `z[i, 0]` (real part) or `z[i, 1]` (imaginary part). Where the first order is
right, the second-order check runs on the same view (double backward of complex code).

A backward that forgets a conjugate (grad * f'(z) instead of grad * conj(f'(z)) for a
holomorphic f) is right after conjugating what goes into and comes out of it; when the
conjugated run agrees with finite differences, the message says "conjugate missing".
"""

from __future__ import annotations

from dataclasses import replace

import torch

from harness.checks.finite_diff import check_finite_diff
from harness.checks.second_order import check_second_order
from harness.checks.spec import Check, Finding
from harness.diagnose import transforms
from harness.inputs import Example, as_outputs, reparametrized
from harness.tolerances import dtype_name


class _ConjugateGradient(torch.autograd.Function):
    """The identity, whose backward conjugates the gradient passing through."""

    @staticmethod
    def forward(ctx, z):
        return z.clone()

    @staticmethod
    def backward(ctx, g):
        return g.conj()


def _real(t: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(t.resolve_conj()) if t.is_complex() else t


def real_view(ex: Example, conjugated: bool = False) -> Example:
    """The example with every complex input, output and cotangent as (..., 2) real pairs.
    `conjugated` conjugates the gradients going into and coming out of fn's backward."""
    complex_at = {i for i, x in enumerate(ex.inputs) if x.is_complex()}

    def fn(*xs):
        zs = [torch.view_as_complex(x) if i in complex_at else x for i, x in enumerate(xs)]
        if conjugated:
            zs = [_ConjugateGradient.apply(z) if i in complex_at else z for i, z in enumerate(zs)]
        outs = as_outputs(ex.fn(*zs))
        if conjugated:
            outs = [_ConjugateGradient.apply(o) if o.is_complex() else o for o in outs]
        return tuple(_real(o) for o in outs)

    inputs = tuple(_real(x) for x in ex.inputs)
    cotangents = tuple(_real(v) for v in ex.cotangents)
    return reparametrized(
        ex, fn, inputs, complex_at, dtype=ex.dtype.to_real(), cotangents=cotangents,
        scalar_output=len(cotangents) == 1 and cotangents[0].dim() == 0,
        reference_dtype=ex.reference_dtype.to_real())


def check_complex(ex: Example, settings) -> Finding:
    """The fd check, then the second-order check, through the real view; a first-order
    failure that conjugation fixes is named so."""
    if not any(x.is_complex() for x in ex.inputs):
        return Finding(skip=transforms.NO_COMPLEX_INPUT)
    view = real_view(ex)
    found = check_finite_diff(view, settings)
    preface = [transforms.complex_view_phrase(dtype_name(ex.dtype), ex.dtype.to_real())]
    if found.failed:
        if not check_finite_diff(real_view(ex, conjugated=True), settings).failed:
            return replace(found, view=view, pattern=transforms.CONJUGATE_MISSING,
                           preface=(*preface, transforms.CONJUGATE_MISSING))
        return replace(found, view=view, preface=tuple(preface))
    if ex.case.twice_differentiable is not False:
        second = check_second_order(view, settings)
        if second.failed:
            return replace(second, view=view, preface=tuple(preface))
    return replace(found, view=view)


COMPLEX = Check("complex", check_complex, dtypes="complex", cost=0.008,
                doc="fd and second order of complex code as real pairs (view_as_real); "
                "a missing conjugate named")
