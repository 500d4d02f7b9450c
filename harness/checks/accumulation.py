"""Where gradients land: k backward passes accumulate k times the gradient into .grad, the
resets (zero_(), zero_grad(), None) clear it, and one SGD step moves each leaf by -lr * grad.

Exactness is the rule (accumulating k equal gradients is exact in floating point up to
k = 3); where a backward is not deterministic, the measured spread between two identical
passes is what is allowed.
"""

from __future__ import annotations

import torch

from harness.autodiff import backward_into_grad, leaf_grads, single_backward, vjp
from harness.checks.spec import Check, Finding
from harness.diagnose import contracts
from harness.diagnose.mismatch import Mismatch, compare
from harness.inputs import Example


def mismatches(ex: Example, expected, actual, allowed) -> list[Mismatch]:
    """compare over the checked inputs: the Mismatch of each input that differs."""
    found = []
    for k, pos in enumerate(ex.wrt):
        m, _, _ = compare(ex.labels[pos], expected[k], actual[k], allowed[k])
        if m is not None:
            found.append(m)
    return found


def check_accumulation(ex: Example, settings) -> Finding:
    """k backward passes (retain_graph) leave k times the single gradient in .grad (k = 2, 3,
    5); torch.autograd.grad leaves .grad untouched. Up to k = 3 the sum is exact in floating
    point; from k = 4 each addition may round, so k^2 ulps of the gradient are allowed."""
    single, spread = single_backward(ex)
    problems = []
    eps = torch.finfo(ex.dtype).eps
    leaves = ex.leaves()
    passes = 0
    for k in (2, 3, 5):  # read along one run of 5 passes: the same as 3 runs of k passes
        while passes < k:
            backward_into_grad(ex, leaves)
            passes += 1
        got = leaf_grads(ex, leaves)
        expected = [k * g for g in single]
        rounding = 0 if k <= 3 else k * k * eps
        allowed = [k * s + rounding * g.abs() for s, g in zip(spread, single)]
        for m in mismatches(ex, expected, got, allowed):
            problems.append(contracts.accumulation_phrase(k, m))
    leaves = ex.leaves()
    vjp(ex, leaves)
    touched = [ex.labels[i] for i in ex.wrt if leaves[i].grad is not None]
    if touched:
        problems.append(contracts.AUTOGRAD_GRAD_TOUCHED + ", ".join(touched))
    return Finding(problems=problems)


def check_zeroing(ex: Example, settings) -> Finding:
    """.grad.zero_(), optimizer.zero_grad() (None by default, zeros with set_to_none=False) and
    .grad = None each reset accumulation: the next backward gives the single gradient."""
    single, spread = single_backward(ex)
    problems = []
    leaves = ex.leaves()
    params = [leaves[i] for i in ex.wrt]
    optimizer = torch.optim.SGD(params, lr=0.0)
    resets = {
        ".grad.zero_()": lambda: [p.grad.zero_() for p in params if p.grad is not None],
        "optimizer.zero_grad()": optimizer.zero_grad,
        "optimizer.zero_grad(set_to_none=False)": lambda: optimizer.zero_grad(set_to_none=False),
        ".grad = None": lambda: [setattr(p, "grad", None) for p in params],
    }
    # each reset clears the gradient the backward before it left: the in-place ones
    # (zero_(), set_to_none=False) each follow a backward into None, where autograd may have
    # taken the backward's own tensor as .grad
    backward_into_grad(ex, leaves)
    for name, reset in resets.items():
        reset()
        after = [p.grad for p in params]
        if name == "optimizer.zero_grad()" and any(g is not None for g in after):
            problems.append(contracts.ZERO_GRAD_NOT_NONE)
        if name.endswith("set_to_none=False)") and not all(
                g is not None and not bool(g.any()) for g in after):
            problems.append(contracts.ZERO_GRAD_NOT_ZEROS)
        backward_into_grad(ex, leaves)
        for m in mismatches(ex, single, leaf_grads(ex, leaves), spread):
            problems.append(contracts.after_reset_phrase(name, m))
    return Finding(problems=problems)


def check_optimizer(ex: Example, settings) -> Finding:
    """One torch.optim.SGD step moves each leaf by exactly -lr * grad."""
    lr = 0.1
    leaves = ex.leaves()
    params = [leaves[i] for i in ex.wrt]
    optimizer = torch.optim.SGD(params, lr=lr)
    optimizer.zero_grad()
    backward_into_grad(ex, leaves, retain_graph=False)
    before = [p.detach().clone() for p in params]
    grads = leaf_grads(ex, leaves)
    optimizer.step()
    problems = []
    for k, p in enumerate(params):
        expected = before[k].add(grads[k], alpha=-lr)
        if not torch.equal(p.detach(), expected):
            m, _, _ = compare(ex.labels[ex.wrt[k]], expected, p.detach(),
                              torch.zeros_like(expected, dtype=torch.float64))
            problems.append(contracts.sgd_phrase(lr, m))
    return Finding(problems=problems)


ACCUMULATION = Check("accumulation", check_accumulation, needs_graph=True, cost=0.003,
                     doc="k backward passes leave k x the gradient in .grad; "
                     "torch.autograd.grad leaves .grad alone")
ZEROING = Check("zeroing", check_zeroing, needs_graph=True, cost=0.003,
                doc=".grad.zero_(), zero_grad() and .grad = None reset accumulation")
OPTIMIZER = Check("optimizer", check_optimizer, needs_graph=True, cost=0.001,
                  doc="one SGD step moves each leaf by exactly -lr * grad")
