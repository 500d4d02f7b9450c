"""Whether fn itself is deterministic, asked where a check failed or its readings were not
trusted: a function whose two calls on the same inputs differ (a random start vector,
unseeded dropout) fails every comparison with words about gradients, or passes one whose
finite differences all read noise, when the one true finding is that fn is not a function of
its inputs. Asked only there, so a clean pass pays nothing for it. Differences at rounding
level (ROUNDING_ULPS of the output's largest magnitude) are not counted: those are the
backward determinism question, not this one."""

from __future__ import annotations

from dataclasses import replace

import torch

from harness import memo
from harness.diagnose.mismatch import format_index
from harness.inputs import CaseError, as_outputs
from harness.record import Record

ROUNDING_ULPS = 256
"""Differences up to this many ulps of the output's largest magnitude are rounding (a fused
or fast path taken in one mode and not the other), not randomness."""


class NotDeterministic(CaseError):
    """fn's two calls on the same inputs differ beyond rounding: no comparison on it means
    anything (raised where a comparison doubted; runner.run_check makes it the row's verdict,
    whichever family raised it)."""


def forward_difference(ex) -> str | None:
    """None if two calls of fn on the example's inputs agree to rounding (ROUNDING_ULPS),
    else where and by how much they differ, in words. Kept per example: every failing family
    asks it."""
    found = memo.once_per_example(ex, "forward difference", lambda: _measured(ex) or "")
    return found or None  # "" kept for "they agree": memo keeps no None


def _measured(ex) -> str | None:
    # at the inputs finite differences read (float64 where fn runs in it), against the
    # example's own forward there where its build kept it
    xs = ex.reference_inputs()
    kept = memo.recall(ex, "outputs")
    with torch.no_grad():
        first = kept if kept is not None else as_outputs(ex.fn(*xs))
        second = as_outputs(ex.fn(*xs))
    for k, (a, b) in enumerate(zip(first, second)):
        a, b = (t.to_dense() if t.is_sparse else t for t in (a, b))
        if a.shape != b.shape:
            return f"output {k} has shape {tuple(a.shape)}, then {tuple(b.shape)}"
        if torch.equal(a, b):
            continue
        gap = (a.detach().double() - b.detach().double()).abs().nan_to_num(nan=float("inf"))
        flat = int(gap.flatten().argmax())
        scale = float(a.detach().double().abs().max()) if a.numel() else 0.0
        eps = torch.finfo(a.dtype).eps if a.is_floating_point() else 0.0
        if float(gap.flatten()[flat]) <= ROUNDING_ULPS * eps * scale:
            continue
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), a.shape))
        label = format_index(f"output {k}", index)
        return (f"{label} differs by {float(gap.flatten()[flat]):.3g} "
                f"(the output's largest magnitude: {scale:.3g})")
    return None


def not_deterministic_phrase(difference: str) -> str:
    return (f"fn is not deterministic: two calls on the same inputs differ ({difference}); "
            "every comparison on it compares that noise: seed its randomness (a generator it "
            "is given, or torch.manual_seed inside fn) or make it deterministic")


def raise_if_not_deterministic(ex) -> None:
    """NotDeterministic where two calls of fn on the example's inputs differ."""
    if (difference := forward_difference(ex)) is not None:
        raise NotDeterministic(not_deterministic_phrase(difference))


def with_determinism(record: Record, ex) -> Record:
    """A failing record, prefaced by fn's nondeterminism where two calls differ."""
    if record.status != "fail" or "fn is not deterministic" in record.pattern:
        return record
    try:
        difference = forward_difference(ex)
    except Exception:  # fn raising here is the family's business, not this preface's
        return record
    if difference is None:
        return record
    phrase = not_deterministic_phrase(difference) + "; the verdict below reads it"
    return replace(record, message=f"{phrase}\n{record.message}",
                   pattern=f"fn is not deterministic; {record.pattern}")
