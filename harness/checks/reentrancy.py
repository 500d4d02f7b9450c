"""Reentrancy: the same backward twice gives the same gradients, leaves its inputs and the
incoming gradient alone, returns gradients shaped like their inputs, and no two .grad
tensors share memory."""

from __future__ import annotations

import torch

from harness.autodiff import vjp, with_graph
from harness.checks.spec import Check, Finding
from harness.diagnose import contracts
from harness.inputs import Example, as_outputs

NONDETERMINISM_RUNS = 5
"""Backward passes compared for a case that declares a nondeterministic_tol (else 2)."""


def check_reentrancy(ex: Example, settings) -> Finding:
    """The same backward twice gives identical gradients (else the spread is reported); fn
    and backward leave inputs and cotangent unchanged; the .grad that backward() leaves
    aliases neither the cotangent nor another input's .grad; each gradient has its input's
    dtype, device and shape. (torch.autograd.grad may return views of the cotangent, as
    torch's own sum and add do: that is allowed.)"""
    problems = []
    leaves = ex.leaves()
    before = [x.detach().clone() for x in leaves]
    cotangents = [v.to(ex.dtype) for v in ex.cotangents]
    cot_before = [v.clone() for v in cotangents]
    declared = getattr(ex.case, "nondeterministic_tol", 0.0)
    runs = NONDETERMINISM_RUNS if declared else 2
    first, _ = vjp(ex, leaves, cotangents=cotangents)
    spreads = [torch.zeros((), dtype=torch.float64) for _ in first]
    for _ in range(runs - 1):
        again, _ = vjp(ex, leaves, cotangents=cotangents)
        spreads = [torch.maximum(s, (a - b).abs().max().double().cpu()) if a.numel() else s
                   for s, a, b in zip(spreads, first, again)]
    worst = max((float(s) for s in spreads), default=0.0)
    notes = []
    if declared and 0 < worst <= declared:
        notes.append(contracts.nondeterminism_measured(worst, runs, declared))
    for k, spread in enumerate(spreads):
        if float(spread) > declared:
            problems.append(contracts.nondeterministic_phrase(
                ex.labels[ex.wrt[k]], float(spread), float(first[k].abs().max()), runs,
                declared))
    for x, old, label in zip(leaves, before, ex.labels):
        if not torch.equal(x.detach(), old):
            problems.append(contracts.MUTATED_INPUT + label)
    if any(not torch.equal(v, old) for v, old in zip(cotangents, cot_before)):
        problems.append(contracts.MUTATED_COTANGENT)
    for k, g in enumerate(first):
        pos = ex.wrt[k]
        if (g.dtype, g.device, g.shape) != (leaves[pos].dtype, leaves[pos].device,
                                            leaves[pos].shape):
            problems.append(contracts.metadata_phrase(ex.labels[pos], g, leaves[pos]))
    shared, aliasing_notes = _aliasing(ex)
    return Finding(problems=problems + shared, notes=notes + aliasing_notes)


def _aliasing(ex: Example) -> tuple[list[str], list[str]]:
    """(problems, notes): a .grad that changes when another input's .grad is zeroed is a
    problem (disjoint views of one buffer, as linalg.multi_dot returns, are fine); sharing
    storage with the gradient passed to backward() is a note, since torch itself does it for
    views."""
    leaves = ex.leaves()
    targets, cotangents = with_graph(ex, as_outputs(ex.fn(*leaves)))
    torch.autograd.backward(targets, grad_tensors=cotangents)
    passed = {v.untyped_storage().data_ptr() for v in cotangents}
    seen: dict[int, int] = {}
    problems, notes = [], []
    for pos in ex.wrt:
        grad = leaves[pos].grad
        if grad is None:
            continue
        ptr = grad.untyped_storage().data_ptr()
        if ptr in passed:
            notes.append(contracts.shares_cotangent_phrase(ex.labels[pos]))
        if ptr in seen and _overlaps(grad, leaves[seen[ptr]].grad):
            problems.append(contracts.aliases_phrase(ex.labels[pos], ex.labels[seen[ptr]]))
        seen[ptr] = pos
    return problems, notes


def _overlaps(grad: torch.Tensor, other: torch.Tensor) -> bool:
    """Whether zeroing `grad` changes `other` (both restored afterwards)."""
    saved, before = grad.clone(), other.clone()
    grad.zero_()
    changed = not torch.equal(other, before)
    grad.copy_(saved)
    return changed


REENTRANCY = Check("reentrancy", check_reentrancy, needs_graph=True, cost=0.001,
                   doc="the same backward twice agrees, mutates nothing, aliases no .grad")
