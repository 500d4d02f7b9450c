"""The checks: each a plain function `check(example, settings) -> list[Record]`.

CHECKS maps the name used in reports, the CLI and pytest ids to the function.
"""

from __future__ import annotations

from harness.checks.analytic import check_analytic
from harness.checks.finite_diff import check_finite_diff
from harness.checks.second_order import check_second_order
from harness.checks.settings import Settings

CHECKS = {
    "analytic": check_analytic,
    "fd": check_finite_diff,
    "second-order": check_second_order,
}

__all__ = ["CHECKS", "Settings", "check_analytic", "check_finite_diff", "check_second_order"]
