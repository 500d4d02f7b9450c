"""Layouts: non-contiguous inputs and cotangents give the gradients contiguous ones give.

Kernels and hand-written backwards often assume contiguous memory (`.view` on a gradient, a
raw data pointer in an extension). Each checked input is rebuilt as a transposed copy (2-D and
up), a strided slice, and channels_last where 4-D, with the cotangents likewise laid out; the
gradients must match the contiguous run and have their input's shape, dtype and device. A
forward that refuses a layout (view needs contiguous memory) or whose output changes with it
(random ops fill memory in order) is noted, not failed: there is no gradient to compare.
"""

from __future__ import annotations

import torch

from harness.autodiff import vjp
from harness.checks.spec import Check, Finding
from harness.diagnose import contracts, transforms
from harness.inputs import Example, as_outputs
from harness.numerics.allowance import allowance
from harness.tolerances import tolerance_for


def _strided(x: torch.Tensor) -> torch.Tensor:
    """x's values in every other slot of a buffer twice as wide (non-contiguous)."""
    buffer = torch.zeros(*x.shape[:-1], 2 * x.shape[-1], dtype=x.dtype, device=x.device)
    view = buffer[..., ::2]
    view.copy_(x)
    return view


def _transposed(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(-1, -2).contiguous().transpose(-1, -2)


def layouts_for(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Non-contiguous copies of x with its values, by name (none for scalars or size-1 dims
    where every layout is contiguous)."""
    out = {}
    if x.dim() >= 1 and x.shape[-1] > 1:
        out["strided slice"] = _strided(x)
    if x.dim() >= 2 and x.shape[-1] > 1 and x.shape[-2] > 1:
        out["transposed"] = _transposed(x)
    if x.dim() == 4 and x.shape[1] > 1 and x.shape[2] * x.shape[3] > 1:
        out["channels_last"] = x.contiguous(memory_format=torch.channels_last)
    return {name: y for name, y in out.items() if not y.is_contiguous()}


def check_layouts(ex: Example, settings) -> Finding:
    """vᵀJ with non-contiguous inputs and cotangents, one layout at a time, against the
    contiguous run; shape, dtype and device of each gradient."""
    tol = tolerance_for(ex.dtype, ex.case.tolerances)
    leaves = ex.leaves()
    cotangents = [v.to(ex.dtype) if v.is_floating_point() else v for v in ex.cotangents]
    reference, _ = vjp(ex, leaves, cotangents=cotangents)
    leaf_layouts = [layouts_for(x.detach()) if x.is_floating_point() else {} for x in leaves]
    cot_layouts = [layouts_for(v) for v in cotangents]
    names = sorted({n for made in leaf_layouts + cot_layouts for n in made})
    if not names:
        return Finding(skip="every input and output is a scalar or "
                                       "has size-1 dimensions: no non-contiguous layout exists")
    problems, notes = [], []
    with torch.no_grad():
        outs = as_outputs(ex.fn(*leaves))
    for name in names:
        moved = tuple(made.get(name, x.detach()).requires_grad_(x.requires_grad)
                      if x.is_floating_point() else x for x, made in zip(leaves, leaf_layouts))
        moved_cot = [made.get(name, v) for v, made in zip(cotangents, cot_layouts)]
        try:  # the forward's own contract first: some ops take contiguous inputs only
            with torch.no_grad():
                moved_outs = as_outputs(ex.fn(*moved))
        except Exception as exc:
            notes.append(transforms.layout_forward_refuses_phrase(name, exc))
            continue
        if not all(torch.equal(a, b) or torch.allclose(a, b, rtol=tol.rtol, atol=tol.floor)
                   for a, b in zip(outs, moved_outs)):
            notes.append(transforms.layout_changes_output_phrase(name))
            continue
        try:
            grads, _ = vjp(ex, moved, cotangents=moved_cot)
        except Exception as exc:
            problems.append(transforms.layout_raises_phrase(name, exc))
            continue
        for k, (g, want) in enumerate(zip(grads, reference)):
            pos = ex.wrt[k]
            label = ex.labels[pos]
            if (g.dtype, g.device, g.shape) != (leaves[pos].dtype, leaves[pos].device,
                                                leaves[pos].shape):
                problems.append(contracts.metadata_phrase(label, g, leaves[pos]))
                continue
            diff = (g.double() - want.double()).abs()
            allowed = allowance(want, tol).to(diff.device)
            if not bool((diff <= allowed).all()):
                problems.append(transforms.layout_mismatch_phrase(
                    name, label, float(diff.max()), float(want.abs().max())))
    return Finding(problems=problems, notes=[f"layouts tried: {', '.join(names)}", *notes])


LAYOUTS = Check("layouts", check_layouts, needs_graph=True, cost=0.002,
                doc="transposed, strided and channels_last inputs and cotangents give the "
                "contiguous gradients")
