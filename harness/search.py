"""Search the input space for a wrong gradient with hypothesis, and shrink what it finds.

A fixed draw misses bugs that live in part of the domain (only x > 4), in some shapes (only
square matrices are right, or a dimension of size 1 is wrong) or in some layouts. The
strategy draws the case's named sizes over their ranges, values over the declared domain
(edges included, kinks avoided), transposed (non-contiguous) layouts and the cotangent seed;
hypothesis shrinks a failure to the smallest input that still fails.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from harness import diagnose
from harness.case import Case, Input
from harness.checks.settings import PROFILES
from harness.inputs import build_example, item_seed
from harness.record import Record

SMALL = 64
"""Tensors up to this many elements get hypothesis-drawn (shrinkable) values; larger ones are
drawn from a seeded generator, so their shape and seed shrink but not each value."""


@dataclass(frozen=True)
class Drawn:
    """One searched input: sizes, tensors (float64), layouts and the cotangent seed."""

    sizes: dict
    tensors: tuple[torch.Tensor, ...]
    transposed: tuple[bool, ...]
    seed: int

    def describe(self, labels) -> str:
        parts = [f"sizes {self.sizes}"] if self.sizes else []
        for label, t, flip in zip(labels, self.tensors, self.transposed):
            values = (", ".join(f"{v:.6g}" for v in t.flatten().tolist())
                      if t.numel() <= 8 else f"{t.numel()} values in [{float(t.min()):.4g}, "
                      f"{float(t.max()):.4g}]")
            layout = ", transposed layout" if flip else ""
            parts.append(f"{label}: shape {tuple(t.shape)}{layout} = [{values}]")
        return "; ".join(parts)


def _elements(spec: Input):
    values = st.floats(spec.draw_low, spec.high, allow_nan=False, allow_infinity=False)
    if spec.avoid:
        values = values.filter(lambda v: all(abs(v - a) >= spec.margin for a in spec.avoid))
    return values


def _tensor(draw, spec: Input, sizes: dict) -> torch.Tensor:
    shape = tuple(sizes[d] if isinstance(d, str) else d for d in spec.shape)
    n = math.prod(shape)
    if n <= SMALL:
        values = draw(st.lists(_elements(spec), min_size=n, max_size=n))
        return torch.tensor(values, dtype=torch.float64).reshape(shape)
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    low, high = spec.draw_low, spec.high
    x = low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)
    for value in spec.avoid:
        close = (x - value).abs() < spec.margin
        x[close] = value + spec.margin * 1.5
    return x.clamp(low, high)


def strategy(case: Case) -> st.SearchStrategy[Drawn]:
    """Inputs for `case`: from its specs, or by reseeding its inputs callable."""

    @st.composite
    def drawn(draw) -> Drawn:
        cotangent_seed = draw(st.integers(0, 2**31 - 1))
        if callable(case.inputs):
            gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
            tensors = tuple(case.inputs(gen))
            return Drawn({}, tensors, (False,) * len(tensors), cotangent_seed)
        sizes = {name: draw(st.integers(lo, hi)) for name, (lo, hi) in sorted(case.sizes.items())}
        tensors, flips = [], []
        for spec in case.input_specs:
            t = _tensor(draw, spec, sizes)
            flip = t.dim() >= 2 and draw(st.booleans())
            tensors.append(t.transpose(-1, -2).contiguous().transpose(-1, -2) if flip else t)
            flips.append(flip)
        return Drawn(sizes, tuple(tensors), tuple(flips), cotangent_seed)

    return drawn()


def search(case: Case, dtype: torch.dtype, device: str, check, check_name: str,
           check_settings, profile: str = "quick", report_dir: str | Path | None = None
           ) -> Record:
    """Run `check` over searched inputs; one Record: pass (how many examples), or the
    smallest failing input with its diagnosis and a reproduction line."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    start = time.perf_counter()
    failures: list[tuple[Drawn, list[Record], object]] = []
    tried = 0

    @seed(item_seed(check_settings.seed, f"search|{case.name}", dtype))
    @settings(max_examples=PROFILES[profile], deadline=None, database=None,
              suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate, Phase.shrink])
    @given(drawn=strategy(case))
    def probe(drawn: Drawn) -> None:
        nonlocal tried
        tried += 1
        gen = torch.Generator().manual_seed(drawn.seed)
        try:
            ex = build_example(case, drawn.tensors, dtype, device, check_settings.seed, gen)
            records = check(ex, check_settings)
        except Exception as exc:  # a crash on some input is a finding too
            failures.append((drawn, [], exc))
            raise
        bad = [r for r in records if r.status in ("fail", "error")]
        if bad:
            failures.append((drawn, bad, ex))
            raise AssertionError(bad[0].message)

    raised = None
    try:
        probe()
    except Exception as exc:  # hypothesis re-raises the shrunk failure, or its own error
        raised = exc
    seconds = time.perf_counter() - start
    dtype_name = str(dtype).removeprefix("torch.")
    base = dict(case=case.name, check=f"search-{check_name}", dtype=dtype_name, device=device,
                seed=check_settings.seed, seconds=seconds, source=case.source)
    if not failures and raised is not None:  # the search itself broke, not the gradient
        return Record(status="error", message=f"{case.name} {dtype_name} {device}: input "
                      f"search could not run: {type(raised).__name__}: {raised}", **base)
    if not failures:
        return Record(status="pass", message=f"{tried} searched inputs ({profile} profile)",
                      **base)
    drawn, bad, found = failures[-1]  # hypothesis replays the shrunk example last
    labels = _labels(case, len(drawn.tensors))
    saved = _save(drawn, case, dtype_name, check_name, report_dir)
    message = diagnose.search_failure_message(
        case, dtype, device, check_name, tried, profile, drawn.describe(labels),
        bad[0].message if bad else f"{type(found).__name__}: {found}", saved,
        check_settings.seed)
    worst = bad[0] if bad else None
    return Record(status="fail" if bad else "error", message=message,
                  pattern=(worst.pattern if worst else "raised") + " (smallest failing input: "
                  + drawn.describe(labels) + ")",
                  input=worst.input if worst else "", index=worst.index if worst else "",
                  expected=worst.expected if worst else None,
                  actual=worst.actual if worst else None, **base)


def _labels(case: Case, n: int) -> list[str]:
    if callable(case.inputs):
        return [case.input_names[i] if i < len(case.input_names) else f"input {i}"
                for i in range(n)]
    return [s.name or f"input {i}" for i, s in enumerate(case.input_specs)]


def _save(drawn: Drawn, case: Case, dtype_name: str, check_name: str,
          report_dir: str | Path | None) -> Path | None:
    if report_dir is None:
        return None
    folder = Path(report_dir) / "failing"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{case.name.replace('/', '__')}-{check_name}-{dtype_name}.pt"
    torch.save({"case": case.name, "inputs": drawn.tensors, "cotangent_seed": drawn.seed}, path)
    return path
