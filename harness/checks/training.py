"""Training-step checks: the loop around the backward, on a tiny model with torch's SGD.

step-zeroing: with lr=0 the parameters stay put, so two steps must leave the same gradient
as one (twice as much means .grad accumulates across steps). step-updates: with the real lr
the parameters the optimizer holds must move. per-sample: the gradient of the batch-mean
loss equals the mean of the per-sample gradients.
"""

from __future__ import annotations

import torch

from harness.checks.spec import Check, Finding
from harness.diagnose import contracts
from harness.diagnose.mismatch import compare
from harness.inputs import TrainingExample
from harness.numerics.allowance import allowance
from harness.tolerances import tolerance_for


def _param_grads(model) -> dict[str, torch.Tensor | None]:
    return {n: None if p.grad is None else p.grad.detach().clone()
            for n, p in model.named_parameters()}


def check_step_zeroing(ex: TrainingExample, settings) -> Finding:
    """With lr=0 two steps leave the gradient one step leaves."""
    case, model, batch = ex.case, ex.model, ex.batch
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    case.run_step(model, optimizer, batch)
    once = _param_grads(model)
    case.run_step(model, optimizer, batch)
    twice = _param_grads(model)
    problems, notes = [], []
    missing = [n for n, g in once.items() if g is None]
    if len(missing) == len(once):
        problems.append(contracts.STEP_NO_GRAD)
    elif missing:
        notes.append(contracts.unused_parameters_phrase(missing))
    for name, g1 in once.items():
        g2 = twice[name]
        if g1 is None or g2 is None or torch.equal(g1, g2):
            continue
        ratio = float((g2 * g1).sum() / (g1 * g1).sum().clamp_min(1e-300))
        problems.append(contracts.step_accumulates_phrase(name, ratio))
    return Finding(problems=problems, notes=notes)


def check_step_updates(ex: TrainingExample, settings) -> Finding:
    """With the case's lr the parameters the optimizer holds move."""
    case, model, batch = ex.case, ex.model, ex.batch
    optimizer = torch.optim.SGD(model.parameters(), lr=case.lr)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    case.run_step(model, optimizer, batch)
    moved = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])]
    problems = [] if moved else [contracts.STEP_NEVER_UPDATES]
    stuck = [n for n in before if n not in moved]
    notes = [contracts.stuck_parameters_phrase(stuck)] if moved and stuck else []
    return Finding(problems=problems, notes=notes)


def check_per_sample(ex: TrainingExample, settings) -> Finding:
    """The batch-mean loss's gradient equals the mean of the per-sample gradients."""
    case, model, batch = ex.case, ex.model, ex.batch
    params = dict(model.named_parameters())
    if not batch or batch[0].dim() == 0 or batch[0].shape[0] < 2:
        return Finding(skip="the batch has no sample dimension to split")
    whole = torch.autograd.grad(case.loss(model, batch), list(params.values()),
                                allow_unused=True)
    n = batch[0].shape[0]
    mean = [torch.zeros_like(p) for p in params.values()]
    for i in range(n):
        sample = tuple(t[i:i + 1] for t in batch)
        per = torch.autograd.grad(case.loss(model, sample), list(params.values()),
                                  allow_unused=True)
        for acc, g in zip(mean, per):
            if g is not None:
                acc.add_(g / n)
    problems = []
    tol = tolerance_for(ex.dtype)
    for (name, p), w, m in zip(params.items(), whole, mean):
        w = torch.zeros_like(p) if w is None else w
        mismatch, _, _ = compare(name, m, w, allowance(m, tol))
        if mismatch is not None:
            problems.append(contracts.per_sample_phrase(mismatch, n))
    return Finding(problems=problems)


STEP_ZEROING = Check("step-zeroing", check_step_zeroing, applies_to="training", cost=0.005,
                     doc="with lr=0, two steps leave one step's .grad (zero_grad each step)")
STEP_UPDATES = Check("step-updates", check_step_updates, applies_to="training", cost=0.003,
                     doc="a step moves the parameters the optimizer holds")
PER_SAMPLE = Check("per-sample", check_per_sample, applies_to="training", cost=0.013,
                   doc="the batch-mean loss's gradient is the mean of per-sample gradients")
