"""Training-step checks: the loop around the backward, on a tiny model with torch's SGD.

step-zeroing: with lr=0 the parameters stay put, so two steps must leave the same gradient
as one (twice as much means .grad accumulates across steps). step-updates: with the real lr
the parameters the optimizer holds must move. per-sample: the gradient of the batch-mean
loss equals the mean of the per-sample gradients.
"""

from __future__ import annotations

import time

import torch

from harness import diagnose
from harness.case import TrainingCase
from harness.record import Record
from harness.tolerances import tolerance_for


def _setup(case: TrainingCase, dtype: torch.dtype, device: str, seed: int):
    torch_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)  # the model's own initialisation, reproducibly
        model = case.model().to(dtype=dtype, device=device)
    finally:
        torch.random.set_rng_state(torch_state)
    gen = torch.Generator().manual_seed(seed)
    batch = tuple(t.to(dtype=dtype) if t.is_floating_point() else t
                  for t in case.batch(gen))
    return model, tuple(t.to(device) for t in batch)


def _grads(model) -> dict[str, torch.Tensor | None]:
    return {n: None if p.grad is None else p.grad.detach().clone()
            for n, p in model.named_parameters()}


def _done(case, check, dtype, device, seed, problems, start, notes=()) -> list[Record]:
    return [diagnose.training_record(case, check, dtype, device, seed, problems, list(notes),
                                     time.perf_counter() - start)]


def check_step_zeroing(case: TrainingCase, dtype, device, settings) -> list[Record]:
    start = time.perf_counter()
    model, batch = _setup(case, dtype, device, settings.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    case.run_step(model, optimizer, batch)
    once = _grads(model)
    case.run_step(model, optimizer, batch)
    twice = _grads(model)
    problems, notes = [], []
    missing = [n for n, g in once.items() if g is None]
    if len(missing) == len(once):
        problems.append(diagnose.STEP_NO_GRAD)
    elif missing:
        notes.append(diagnose.unused_parameters_phrase(missing))
    for name, g1 in once.items():
        g2 = twice[name]
        if g1 is None or g2 is None or torch.equal(g1, g2):
            continue
        ratio = float((g2 * g1).sum() / (g1 * g1).sum().clamp_min(1e-300))
        problems.append(diagnose.step_accumulates_phrase(name, ratio))
    return _done(case, "step-zeroing", dtype, device, settings.seed, problems, start, notes)


def check_step_updates(case: TrainingCase, dtype, device, settings) -> list[Record]:
    start = time.perf_counter()
    model, batch = _setup(case, dtype, device, settings.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=case.lr)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    case.run_step(model, optimizer, batch)
    moved = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])]
    problems = [] if moved else [diagnose.STEP_NEVER_UPDATES]
    stuck = [n for n in before if n not in moved]
    notes = [diagnose.stuck_parameters_phrase(stuck)] if moved and stuck else []
    return _done(case, "step-updates", dtype, device, settings.seed, problems, start, notes)


def check_per_sample(case: TrainingCase, dtype, device, settings) -> list[Record]:
    start = time.perf_counter()
    model, batch = _setup(case, dtype, device, settings.seed)
    params = dict(model.named_parameters())
    if not batch or batch[0].dim() == 0 or batch[0].shape[0] < 2:
        return [diagnose.training_skip(case, "per-sample", dtype, device, settings.seed,
                                       "the batch has no sample dimension to split")]
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
    tol = tolerance_for(dtype)
    for (name, p), w, m in zip(params.items(), whole, mean):
        w = torch.zeros_like(p) if w is None else w
        mismatch, _, _ = diagnose.compare(name, m, w, diagnose.allowance(m, tol))
        if mismatch is not None:
            problems.append(diagnose.per_sample_phrase(mismatch, n))
    return _done(case, "per-sample", dtype, device, settings.seed, problems, start)


TRAINING_CHECKS = {
    "step-zeroing": check_step_zeroing,
    "step-updates": check_step_updates,
    "per-sample": check_per_sample,
}
