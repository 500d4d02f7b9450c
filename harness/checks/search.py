"""The search check: the finite-difference check over hypothesis-searched inputs."""

from __future__ import annotations

from harness.checks.finite_diff import check_finite_diff
from harness.inputs import Example
from harness.record import Record
from harness.search import search


def check_search(ex: Example, settings) -> list[Record]:
    """Search sizes, values, layouts and cotangents for an input where the fd check fails."""
    return [search(ex.case, ex.dtype, ex.device, check_finite_diff, "fd", settings,
                   settings.profile, settings.report_dir)]
