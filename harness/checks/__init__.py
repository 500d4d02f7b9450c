"""The check families, one table built from their specs (harness.checks.spec.Check).

Each family is a module that ends with its spec; adding one is that module and one line in
TABLE. The order of TABLE is the order items run and rows appear in reports.
"""

from __future__ import annotations

from harness.checks import (
    accumulation,
    analytic,
    backward_determinism,
    batched,
    compiled,
    complex,
    finite_diff,
    forward,
    graph,
    layouts,
    modules,
    opcheck,
    precision,
    reentrancy,
    reference,
    search,
    second_order,
    sparse,
    training,
    undefined,
)
from harness.checks.settings import Settings
from harness.checks.spec import Check, Finding

TABLE: tuple[Check, ...] = (
    analytic.ANALYTIC,
    finite_diff.FD,
    modules.MODULES,
    second_order.SECOND_ORDER,
    forward.FORWARD_AD,
    forward.FWD_OVER_REV,
    batched.BATCHED_GRAD,
    batched.BATCHED_FORWARD_AD,
    batched.VMAP,
    precision.LOW_PRECISION,
    reference.REFERENCE,
    reference.REFERENCE_SECOND_ORDER,
    reference.REFERENCE_FORWARD_AD,
    *opcheck.OPCHECKS,
    complex.COMPLEX,
    compiled.COMPILED,
    sparse.SPARSE,
    search.SEARCH,
    accumulation.ACCUMULATION,
    accumulation.ZEROING,
    graph.RETAIN_GRAPH,
    graph.RETAIN_GRAD,
    graph.NON_SCALAR,
    graph.GRAPH_SWITCHES,
    reentrancy.REENTRANCY,
    backward_determinism.BACKWARD_DETERMINISM,
    accumulation.OPTIMIZER,
    undefined.UNDEFINED_GRAD,
    layouts.LAYOUTS,
    training.STEP_ZEROING,
    training.STEP_UPDATES,
    training.PER_SAMPLE,
)


def by_name(table: tuple[Check, ...]) -> dict[str, Check]:
    """Every family of `table` by name; a name declared twice is an error (the later spec
    would silently replace the earlier one, and its items run under the other's name)."""
    named: dict[str, Check] = {}
    for spec in table:
        if spec.name in named:
            raise ValueError(f"check family {spec.name!r} is declared twice in TABLE; give "
                             "each family its own name")
        named[spec.name] = spec
    return named


CHECKS: dict[str, Check] = by_name(TABLE)
"""Every family by name: what reports, the CLI and pytest ids call it."""

__all__ = ["CHECKS", "TABLE", "Check", "Finding", "Settings"]
