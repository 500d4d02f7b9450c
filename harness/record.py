"""Record: one result row, the only thing checks return and reports read."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from harness.source import Source

STATUSES = ("pass", "fail", "error", "skip", "xfail", "xpass", "warn")
"""xfail: a case that is wrong on purpose (a teaching case's mistake) failed as it declares;
xpass: it passed instead, which fails the run (pytest's strict xfail). warn: the gradient's
values are right, but something else is not (a tensor kept on ctx outside save_for_backward
holds memory for the graph's life; a second backward succeeds where torch would refuse it):
the run passes unless it is strict (`--strict`, `strict=True`, `--harness-strict`)."""
GOOD = ("pass", "skip", "xfail", "warn")
BAD = ("fail", "error", "xpass")


def fails_run(status: str, strict: bool = False) -> bool:
    """Whether a row of this status fails its run: BAD ones always, warn ones when strict."""
    return status in BAD or (strict and status == "warn")


class HarnessWarning(UserWarning):
    """A warn row where the caller reports through Python's warnings (pytest items,
    assert_gradients): shown in pytest's warnings summary, not a failure."""


@dataclass(frozen=True)
class Record:
    """What one check found for one case, dtype and device.

    For a failure, `input`/`index` locate the worst element, `expected` is the trusted
    reference there and `actual` the checked value; `pattern` is the diagnosis in a phrase and
    `message` the full explanation with a reproduction line. `detects`, for checks that
    compare against a reference: the smallest error on any one element of any input that the
    comparison would have caught (absolute, in the compared quantity's units).
    """

    case: str
    check: str
    dtype: str
    device: str
    status: str
    message: str = ""
    input: str = ""
    index: str = ""
    expected: float | None = None
    actual: float | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    allowed: float | None = None
    detects: float | None = None
    pattern: str = ""
    seed: int | None = None
    seconds: float = 0.0
    source: Source = Source()
    """Where the case came from (harness.source); its words in the CSV."""
    tolerance: str = ""
    """The case's own rtol/atol where it set them (Case.rtol, Case.atol), else empty."""
    reproduce: str = ""
    """What runs this row's item again, as its message's `reproduce:` line says (a copy
    button in the HTML report); not in the CSV."""
    figure: str = ""
    """A failure's picture (base64 PNG), drawn from `evidence` where the HTML report is
    written; not in the CSV."""
    evidence: Any = field(default=None, compare=False, repr=False)
    """harness.evidence.Evidence: the tensors a failure was judged on, for its picture and
    saved inputs; not in `as_dict` (a row's plain values), sent beside it between processes."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"Record.status must be one of {STATUSES}, got {self.status!r}")

    def as_dict(self) -> dict:
        """The row's plain values, for a table: every field but `evidence`, the source in
        words."""
        row = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "evidence"}
        row["source"] = str(self.source)
        return row
