"""Benchmark: the second-order verdict beside gradgradcheck's, item by item.

    python -m pytest tests/bench_gradgradcheck_parity.py --benchmark-only -n 0 -s

Over the items of tests/bench_net_cost.py (every built-in case in float64 at seed 0, the
planted Functions, eleven real custom Functions as written and planted 2% off), it runs the
harness's `second-order` family (`check_gradients(fn, *inputs, checks="second-order")`) and
`gradgradcheck` in fast and in default mode (default only up to SLOW_MODE_MAX elements), and
prints each verdict, whether they agree, and for each disagreement the harness row's own
words. HARNESS_PARITY_REPORT writes the table as markdown.
"""

from __future__ import annotations

import os
import warnings

import torch
from bench_net_cost import SLOW_MODE_MAX, fresh, items

from harness import check_gradients

ROWS = []


def _harness(fn, leaves) -> tuple[str, str]:
    (record,) = check_gradients(fn, *fresh(leaves), checks="second-order").records
    first = record.message.splitlines()[0] if record.message else ""
    return record.status, (record.pattern or first)


def _gradgradcheck(fn, leaves, fast: bool) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ok = torch.autograd.gradgradcheck(fn, fresh(leaves), fast_mode=fast,
                                              raise_exception=False)
        except Exception as exc:  # noqa: BLE001 - a raise is its verdict here
            return f"raised {type(exc).__name__}: {str(exc).splitlines()[0][:140]}"
    return "pass" if ok else "fail"


def _agrees(harness: str, other: str) -> bool | None:
    """A pass beside a pass, a failure beside a failure or a raise, and a skip (no double
    backward to check: @once_differentiable, or torch has none) beside a raise."""
    if other == "not run":
        return None
    if harness == "skip":
        return other.startswith("raised")
    return (harness == "pass") == (other == "pass")


def _sweep() -> list[dict]:
    rows = []
    for name, fn, leaves in items():
        elements = sum(t.numel() for t in leaves if t.requires_grad)
        status, words = _harness(fn, leaves)
        fast = _gradgradcheck(fn, leaves, True)
        slow = _gradgradcheck(fn, leaves, False) if elements <= SLOW_MODE_MAX else "not run"
        row = dict(item=name, elements=elements, harness=status, fast=fast, default=slow,
                   agrees_fast=_agrees(status, fast), agrees_default=_agrees(status, slow),
                   words=words)
        print(f"{name}: harness {status}, gradgradcheck fast {fast}, default {slow}"
              + ("" if row["agrees_fast"] and row["agrees_default"] is not False
                 else f"  <- {words[:160]}"), flush=True)
        rows.append(row)
    return rows


def test_gradgradcheck_parity(benchmark):
    ROWS.extend(benchmark.pedantic(_sweep, rounds=1, iterations=1))


def teardown_module():
    if not ROWS:
        return
    fast = [r for r in ROWS if r["agrees_fast"] is not None]
    slow = [r for r in ROWS if r["agrees_default"] is not None]
    lines = [f"{sum(r['agrees_fast'] for r in fast)} of {len(fast)} items agree with "
             f"gradgradcheck fast mode; {sum(r['agrees_default'] for r in slow)} of {len(slow)} "
             "with its default mode (run up to "
             f"{SLOW_MODE_MAX} elements).", "",
             "| item | elements | harness second-order | gradgradcheck fast | default | "
             "where they differ, the harness row says |", "|" + "---|" * 6]
    for r in ROWS:
        differs = r["agrees_fast"] is False or r["agrees_default"] is False
        lines.append(f"| {r['item']} | {r['elements']} | {r['harness']} | {r['fast']} | "
                     f"{r['default']} | {r['words'] if differs else ''} |")
    print("\n" + "\n".join(lines))
    out = os.environ.get("HARNESS_PARITY_REPORT")
    if out:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write("# Second order beside gradgradcheck (CPU)\n\n"
                         f"torch {torch.__version__}. Command: `HARNESS_PARITY_REPORT={out} "
                         "python -m pytest tests/bench_gradgradcheck_parity.py "
                         "--benchmark-only -n 0 -s`.\n\n" + "\n".join(lines) + "\n")
