"""Backward determinism (opt-in: `--determinism`, or the case's tag "determinism"): fn and its
backward run N times on the same inputs and cotangent. Three outcomes: bitwise identical;
nondeterministic within the case's `nondeterministic_tol` (a pass that says how much and
where); or beyond it (a failure naming the worst elements). Kernels with atomic adds (scatter
and index_add backwards, flash-attention's dq) differ run to run by design, and a race shows
as a spread far above that; the reentrancy family's two-run comparison keeps its meaning."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.autodiff import vjp
from harness.checks.spec import Check, Finding
from harness.diagnose.mismatch import format_index
from harness.inputs import Example, as_outputs

WORST_SHOWN = 3
"""Elements named per input, largest spread first."""


@dataclass(frozen=True)
class Spread:
    """How far N runs of one tensor strayed from the first: per element, the largest
    |run - first|, and in how many runs it differed at all."""

    label: str
    tensor: str
    first: torch.Tensor
    largest: torch.Tensor
    differing_runs: int

    @property
    def worst(self) -> float:
        return float(self.largest.max()) if self.largest.numel() else 0.0

    def elements(self) -> str:
        """'37 of 48 elements, largest spread 3.1e-12 at x[2, 1] (where it is 0.53), ...'."""
        flat = self.largest.flatten()
        differ = int((flat > 0).sum())
        shown = torch.argsort(flat, descending=True)[:min(WORST_SHOWN, differ)]
        parts = []
        for rank, position in enumerate(shown.tolist()):
            index = tuple(int(i) for i in torch.unravel_index(torch.tensor(position),
                                                              self.largest.shape))
            where = format_index(self.tensor, index)
            value = float(self.first.flatten()[position])
            parts.append(f"{'largest spread ' if rank == 0 else ''}{float(flat[position]):.3g}"
                         f" at {where} (first run: {value:.6g})")
        return f"{differ} of {flat.numel()} elements, " + ", then ".join(parts)


def _gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| in float64, 0 where both are NaN, inf where only one is."""
    a, b = a.detach().double(), b.detach().double()
    both = a.isnan() & b.isnan()
    return (a - b).abs().nan_to_num(nan=float("inf")).masked_fill(both, 0.0)


class _Tracker:
    """The first run of some tensors and, run by run, each one's Spread from it (kept as a
    running maximum, so N runs of a large model hold two copies, not N)."""

    def __init__(self, labels: list[tuple[str, str]], first: list[torch.Tensor]):
        self.labels = labels  # (what it is, the tensor's name in an index)
        self.first = [t.detach() for t in first]
        self.largest = [torch.zeros(t.shape, dtype=torch.float64) for t in first]
        self.differing = [0] * len(first)

    def add(self, again: list[torch.Tensor]) -> None:
        for k, (first, other) in enumerate(zip(self.first, again)):
            gap = _gap(first, other).cpu()
            if bool((gap > 0).any()):
                self.differing[k] += 1
                self.largest[k] = torch.maximum(self.largest[k], gap)

    def spreads(self) -> list[Spread]:
        return [Spread(label, tensor, first.double().cpu(), big, n) for (label, tensor), first,
                big, n in zip(self.labels, self.first, self.largest, self.differing)]


def _run(ex: Example, cotangents) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """fn's outputs and the gradients of its checked inputs, from one fresh forward."""
    leaves = ex.leaves()
    outs = as_outputs(ex.fn(*leaves))
    grads, _ = vjp(ex, leaves, cotangents=cotangents, outs=outs)
    return [o.detach() for o in outs], [g.detach() for g in grads]


def check_backward_determinism(ex: Example, settings) -> Finding:
    """N runs of fn and its backward (Settings.determinism_runs) on the same inputs and
    cotangent, each gradient held to the first bitwise, or within Case.nondeterministic_tol."""
    runs = settings.determinism_runs
    declared = ex.case.nondeterministic_tol
    cotangents = [v.to(ex.dtype) for v in ex.cotangents]
    outs, grads = _run(ex, cotangents)
    forward = _Tracker([(f"output {k}", f"output {k}") for k in range(len(outs))], outs)
    backward = _Tracker([(f"the gradient of {ex.labels[pos]}", ex.labels[pos])
                         for pos in ex.wrt], grads)
    for _ in range(runs - 1):
        outs, grads = _run(ex, cotangents)
        forward.add(outs)
        backward.add(grads)
    varied = [s for s in backward.spreads() if s.differing_runs]
    if not varied:
        return Finding(notes=(f"bitwise identical over {runs} runs of fn and its backward "
                              "(same inputs and cotangent)",))
    moved = [s for s in forward.spreads() if s.differing_runs]
    origin = (f"the forward differs too ({'; '.join(s.elements() for s in moved)}): the "
              "nondeterminism starts in fn" if moved else
              "the forward was bitwise identical in every run: the nondeterminism is in the "
              "backward")
    beyond = [s for s in varied if s.worst > declared]
    if not beyond:
        measured = "; ".join(f"{s.label}: {s.elements()}" for s in varied)
        return Finding(notes=(f"nondeterministic within the declared nondeterministic_tol "
                              f"{declared:.3g} over {runs} runs: {measured}; {origin}",))
    remedy = (f"more than the declared nondeterministic_tol {declared:.3g}" if declared else
              "bitwise equality expected: if the kernel is nondeterministic by design (atomic "
              "adds), declare the spread you accept (Case(nondeterministic_tol=...), or "
              "check_gradients(..., nondeterministic_tol=...)); else "
              "run it under torch.use_deterministic_algorithms(True) to find the op")
    problems = [f"{s.label[0].upper()}{s.label[1:]} differs across {runs} runs of fn and "
                f"its backward (same inputs and cotangent), in {s.differing_runs} of the "
                f"{runs - 1} reruns: {s.elements()}; {remedy}" for s in beyond]
    return Finding(problems=tuple(problems), notes=(origin,))


BACKWARD_DETERMINISM = Check(
    "backward-determinism", check_backward_determinism, needs_graph=True,
    opt_in="determinism", flag="--determinism", cost=0.01,
    flag_help="also run fn and its backward N times on the same inputs (--determinism-runs, "
    "default 10): bitwise identical, within the case's nondeterministic_tol, or beyond it",
    doc="N runs of fn and backward: bitwise equal, within nondeterministic_tol, or beyond")
