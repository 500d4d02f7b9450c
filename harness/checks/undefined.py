"""Undefined and unused gradients (gradcheck's check_undefined_grad, and more).

When only some outputs of a multi-output fn get a gradient, autograd hands the backward
undefined (None) gradients for the others; the backward must treat them as zeros. So, per
output k: the gradient with output k's cotangent alone (the others undefined) must equal the
gradient with the others' cotangents explicit zeros, and must not raise. With every output
undefined, the backward must give zero or no gradient, as gradcheck checks. Inputs that get no
gradient at all (None, from every output) are named in a note.
"""

from __future__ import annotations

import torch

from harness.checks.spec import Check, Finding
from harness.diagnose import contracts
from harness.inputs import Example, as_outputs
from harness.numerics.allowance import allowance
from harness.tolerances import tolerance_for


def _grads_given(outs, targets, cotangents):
    pairs = [(o, v) for o, v in zip(outs, cotangents) if v is not None and o.requires_grad]
    if not pairs:
        return [None] * len(targets)
    return list(torch.autograd.grad([o for o, _ in pairs], targets, [v for _, v in pairs],
                                    retain_graph=True, allow_unused=True))


def check_undefined_grad(ex: Example, settings) -> Finding:
    """Per output: its cotangent alone equals it with explicit zeros elsewhere; all outputs
    undefined gives zero or no gradient; no gradient at all is named."""
    tol = tolerance_for(ex.dtype, ex.case.tolerances)
    leaves = ex.leaves()
    targets = [leaves[i] for i in ex.wrt]
    outs = as_outputs(ex.fn(*leaves))
    cotangents = [v.to(o.dtype) for o, v in zip(outs, ex.cotangents)]
    live = [k for k, o in enumerate(outs) if o.requires_grad]
    problems, notes = [], []
    everything = _grads_given(outs, targets, cotangents)
    for label, g in zip((ex.labels[i] for i in ex.wrt), everything):
        if g is None:
            notes.append(contracts.no_gradient_phrase(label))
    if len(live) > 1:
        for k in live:
            alone = [v if j == k else None for j, v in enumerate(cotangents)]
            zeros = [v if j == k else torch.zeros_like(v) for j, v in enumerate(cotangents)]
            try:
                got = _grads_given(outs, targets, alone)
            except Exception as exc:
                problems.append(contracts.undefined_crash_phrase(k, exc))
                continue
            want = _grads_given(outs, targets, zeros)
            for label, g, w in zip((ex.labels[i] for i in ex.wrt), got, want):
                g = torch.zeros_like(w) if g is None and w is not None else g
                if w is None or g is None:
                    continue
                allowed = allowance(w, tol)
                diff = (g.double() - w.double()).abs()
                if not bool((diff <= allowed.to(diff.device)).all()):
                    problems.append(contracts.undefined_mismatch_phrase(
                        k, label, float(diff.max()), float(w.abs().max())))
    try:
        undefined = [torch._C._functions.UndefinedGrad()(o) for o in (outs[k] for k in live)]
        given = [torch.ones_like(o) for o in undefined]
        nothing = torch.autograd.grad(undefined, targets, given, allow_unused=True)
        for label, g in zip((ex.labels[i] for i in ex.wrt), nothing):
            if g is not None and bool(g.abs().max() > 0):
                problems.append(contracts.undefined_nonzero_phrase(label, float(g.abs().max())))
    except Exception as exc:
        problems.append(contracts.undefined_crash_phrase(None, exc))
    return Finding(problems=problems, notes=notes)


UNDEFINED_GRAD = Check("undefined-grad", check_undefined_grad, needs_graph=True, cost=0.001,
                       doc="undefined (None) gradients of other outputs count as zeros")
