"""The checks: each a plain function `check(example, settings) -> list[Record]`.

CHECKS maps the name used in reports, the CLI and pytest ids to the function.
"""

from __future__ import annotations

from harness.checks.analytic import check_analytic
from harness.checks.batched import check_batched_forward_ad, check_batched_grad, check_vmap
from harness.checks.compiled import check_compiled
from harness.checks.complex import check_complex
from harness.checks.finite_diff import check_finite_diff
from harness.checks.forward import check_forward_ad, check_fwd_over_rev
from harness.checks.layouts import check_layouts
from harness.checks.precision import check_low_precision
from harness.checks.search import check_search
from harness.checks.second_order import check_second_order
from harness.checks.semantics import (
    check_accumulation,
    check_graph_switches,
    check_non_scalar,
    check_optimizer,
    check_reentrancy,
    check_retain_grad,
    check_retain_graph,
    check_zeroing,
)
from harness.checks.settings import Settings
from harness.checks.sparse import check_sparse
from harness.checks.training import TRAINING_CHECKS
from harness.checks.undefined import check_undefined_grad

GRADIENT_CHECKS = {
    "analytic": check_analytic,
    "fd": check_finite_diff,
    "second-order": check_second_order,
    "forward-ad": check_forward_ad,
    "fwd-over-rev": check_fwd_over_rev,
    "batched-grad": check_batched_grad,
    "batched-forward-ad": check_batched_forward_ad,
    "vmap": check_vmap,
    "low-precision": check_low_precision,
    "complex": check_complex,
    "compiled": check_compiled,
    "sparse": check_sparse,
    "search": check_search,
}
SEMANTIC_CHECKS = {
    "accumulation": check_accumulation,
    "zeroing": check_zeroing,
    "retain-graph": check_retain_graph,
    "retain-grad": check_retain_grad,
    "non-scalar": check_non_scalar,
    "graph-switches": check_graph_switches,
    "reentrancy": check_reentrancy,
    "optimizer": check_optimizer,
    "undefined-grad": check_undefined_grad,
    "layouts": check_layouts,
}
CHECKS = {**GRADIENT_CHECKS, **SEMANTIC_CHECKS}
OPT_IN_CHECKS = {"compiled": "compile", "sparse": "sparse"}
"""Checks run only when named (--check, --compiled, Case.checks), or for cases carrying the
tag they map to."""
"""Checks of a Case; a TrainingCase has TRAINING_CHECKS."""
ALL_CHECK_NAMES = [*CHECKS, *TRAINING_CHECKS]

__all__ = ["ALL_CHECK_NAMES", "CHECKS", "GRADIENT_CHECKS", "OPT_IN_CHECKS", "SEMANTIC_CHECKS",
           "Settings", "TRAINING_CHECKS"]
