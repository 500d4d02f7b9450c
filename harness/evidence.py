"""What a failing row's pictures and saved inputs are made from, carried on its Record.

The runner only runs: it keeps the tensors a failure was judged on (on the CPU) and leaves
drawing them and saving searched inputs to where reports are written (harness.report), which
may be another process. Nothing here draws or writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ComparedInput:
    """One input's element-by-element comparison that failed: the reference and the checked
    gradient per element, what each element was allowed, and the input's values."""

    label: str
    reference: Any  # torch.Tensor, as every field below
    checked: Any
    allowed: Any
    values: Any = None


@dataclass(frozen=True)
class SearchedInputs:
    """A searched failure: every searched input with whether it failed, the smallest failing
    one, and what `torch.load` gives back from its saved file (`file_stem`.pt)."""

    seen: tuple  # ((tensors, failed), ...)
    smallest: tuple  # its tensors
    labels: tuple[str, ...]
    saved: dict  # {"case": ..., "inputs": ..., "cotangent_seed": ...}
    file_stem: str


@dataclass(frozen=True)
class Evidence:
    """A failure's data: the failing element-by-element comparisons (at most PICTURED, as
    `reference` against `checked`), or a searched failure's inputs."""

    reference: str = ""
    checked: str = ""
    compared: tuple[ComparedInput, ...] = ()
    searched: SearchedInputs | None = None


PICTURED = 3
"""Failing inputs kept for a picture at most: the picture shows no more."""


def _cpu(t):
    return None if t is None else t.detach().cpu()


def evidence_of(finding, status: str, case_name: str, check: str, dtype: str) -> Evidence | None:
    """The evidence of a Finding whose row ended as `status`: a searched failure's inputs
    (whatever the row), the failing element-by-element comparisons of a failing row; None
    when there is nothing to show."""
    searched = finding.searched
    if searched is not None and searched.seen:
        return Evidence(searched=SearchedInputs(
            seen=tuple((tuple(_cpu(t) for t in tensors), failed)
                       for tensors, failed in searched.seen),
            smallest=tuple(_cpu(t) for t in searched.smallest_tensors),
            labels=tuple(searched.labels), saved=searched.inputs,
            file_stem=f"{case_name.replace('/', '__')}-{check}-{dtype}"))
    if status != "fail" or not finding.verdicts:
        return None
    compared = tuple(
        ComparedInput(v.label, _cpu(v.reference), _cpu(v.checked), _cpu(v.allowed),
                      _cpu(v.values))
        for v in finding.verdicts
        if v.mismatch is not None and v.checked is not None and v.reference is not None
        and v.allowed is not None)[:PICTURED]
    if not compared:
        return None
    return Evidence(reference=finding.reference, checked=finding.checked, compared=compared)
