"""Benchmark: the default one-call net against gradcheck with the same coverage, in one run.

Run with `python -m pytest tests/bench_net_cost.py --benchmark-only -n 0 -s` (part of
`nox -s bench`). Over every built-in case (float64, seed 0, its drawn inputs; no `grad=`, as
a user with only a function would call it), the planted Functions of tests/planted.py
(right and wrong ones, on an 8x6 float64 input) and eleven custom autograd Functions of
public libraries (tests/real_functions.py: efficientnet_pytorch, timm, flash-attn, entmax,
apex, torch_scatter), as written and with their backward planted 2% off, it times,
alternately in this process:

* harness: `check_gradients(fn, *inputs)` with no `checks=`, the whole default net (first
  and second order, forward mode, fwd-over-rev, batched, vmap, layouts, undefined gradients,
  bfloat16, an input search and the semantics checks);
* gradcheck: `gradcheck(fn, inputs, check_forward_ad=True, check_batched_grad=True)` plus
  `gradgradcheck(fn, inputs)` (`raise_exception=False`), in its default (slow) mode and in
  fast mode. A custom Function without a jvp makes gradcheck raise at its forward-AD check,
  before gradgradcheck: there it runs with `check_forward_ad=False` (the harness skips
  forward mode there, saying why), and its verdict says "(no forward AD)". Where gradcheck
  still raises (a sparse input) its time to the raise counts and its verdict is "raised".

Prints each item's verdicts and seconds (the best of ROUNDS), the totals, and the medians
the net is held to: a passing check against gradcheck + gradgradcheck on the same items
(default and fast mode), a failing check against the passing median; with
HARNESS_COST_REPORT it writes the tables as markdown.
"""

from __future__ import annotations

import math
import os
import statistics
import time
import warnings

import pytest
import real_functions
import torch

from gradharness_cases import all_cases
from harness import check_gradients
from harness.case import Case
from harness.inputs import draw_example

import planted

ROUNDS = int(os.environ.get("HARNESS_COST_ROUNDS", "3"))
SLOW_MODE_MAX = 2000
"""gradcheck's default (slow) mode builds the whole Jacobian, a column per input element:
above this many elements (the tutorials' TinyModel has 101,110: hours) it is not run."""
ROWS = []

PLANTED = {
    "Square": planted.square,
    "SquareSignFlip": planted.square_sign_flip,
    "SquareIgnoresGrad": planted.square_ignores_grad,
    "SquareTinyError": planted.square_tiny_error,
    "SinMissingHalf": planted.sin_missing_half,
    "SinOneWrong": planted.sin_one_wrong,
    "SquareIgnoresStrides": planted.square_ignores_strides,
    "SquareWithJvp": planted.SquareWithJvp.apply,
    "SquareWrongJvp": planted.SquareWrongJvp.apply,
    "CubeWrongSecond": planted.CubeWrongSecond.apply,
    "SquareFunc": planted.SquareFunc.apply,
    "SquareFuncWrongVmap": planted.SquareFuncWrongVmap.apply,
    "SquareScalesGradOutput": planted.square_scales_grad_output,
}


def items():
    for case in all_cases():
        if isinstance(case, Case):
            leaves = draw_example(case, torch.float64, "cpu", seed=0).leaves()
            yield case.name, case.fn, leaves
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 6, generator=gen, dtype=torch.float64)
    big = torch.randn(40, 40, generator=gen, dtype=torch.float64)  # SinOneWrong: at [12, 34]
    for name, fn in PLANTED.items():
        yield f"planted/{name}", fn, ((big if name == "SinOneWrong" else x).clone()
                                      .requires_grad_(),)
    for wrong in (False, True):
        for name, fn, inputs in real_functions.items(wrong=wrong):
            yield f"real/{name}", fn, inputs


def fresh(leaves):
    return tuple(t.detach().clone().requires_grad_(t.requires_grad) if t.is_floating_point()
                 or t.is_complex() else t for t in leaves)


def _harness(fn, leaves) -> str:
    report = check_gradients(fn, *fresh(leaves))
    if report.ok:
        return "pass"
    return "fail: " + ",".join(sorted({r.check for r in report.failures}))


def _forward_ad_runs(fn, leaves) -> bool:
    """Whether fn has a forward-mode formula: gradcheck raises NotImplementedError at its
    forward-AD check on a custom Function without jvp, before gradgradcheck runs. The harness
    skips forward mode there (with why); gradcheck is then run with the same coverage, as a
    user would after reading its error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.autograd.gradcheck(fn, fresh(leaves), check_forward_ad=True, fast_mode=True,
                                     check_backward_ad=False, raise_exception=False)
    except NotImplementedError:
        return False
    except Exception:  # noqa: BLE001 - any other raise is gradcheck's verdict, timed below
        pass
    return True


def _gradcheck(fn, leaves, fast: bool, forward_ad: bool = True) -> str:
    inputs = fresh(leaves)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            first = torch.autograd.gradcheck(fn, inputs, check_forward_ad=forward_ad,
                                             check_batched_grad=True, fast_mode=fast,
                                             raise_exception=False)
            second = torch.autograd.gradgradcheck(fn, inputs, fast_mode=fast,
                                                  raise_exception=False)
        except Exception as exc:  # noqa: BLE001 - a raise is gradcheck's verdict here
            return f"raised {type(exc).__name__}"
    verdict = "pass" if first and second else ("fail" if first else "fail first order")
    return verdict if forward_ad else f"{verdict} (no forward AD)"


def _best(call, *args) -> tuple[str, float]:
    best, verdict = float("inf"), None
    for _ in range(ROUNDS):
        start = time.perf_counter()
        verdict = call(*args)
        best = min(best, time.perf_counter() - start)
    return verdict, best


def _sweep() -> list[dict]:
    _harness(torch.sin, (torch.randn(4, dtype=torch.float64, requires_grad=True),))  # warm-up
    rows = []
    for name, fn, leaves in items():
        harness, harness_s = _best(_harness, fn, leaves)
        elements = sum(t.numel() for t in leaves if t.requires_grad)
        forward_ad = _forward_ad_runs(fn, leaves)
        slow, slow_s = (_best(_gradcheck, fn, leaves, False, forward_ad)
                        if elements <= SLOW_MODE_MAX else ("not run", float("nan")))
        fast, fast_s = _best(_gradcheck, fn, leaves, True, forward_ad)
        print(f"{name}: {elements} elements, harness {harness} {harness_s:.3f} s, gradcheck "
              f"{slow} {slow_s:.3f} s, fast mode {fast} {fast_s:.3f} s", flush=True)
        rows.append(dict(item=name, elements=elements, real=name.startswith("real/"),
                         harness=harness, harness_s=harness_s, gradcheck=slow,
                         gradcheck_s=slow_s, fast=fast, fast_s=fast_s))
    return rows


def test_net_cost(benchmark):
    ROWS.extend(benchmark.pedantic(_sweep, rounds=1, iterations=1))


def _table(rows) -> list[str]:
    lines = ["| item | elements | harness default net | s | gradcheck + gradgradcheck | s | "
             "same, fast mode | s |", "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['item']} | {r['elements']} | {r['harness']} | {r['harness_s']:.3f} "
                     f"| {r['gradcheck']} | {r['gradcheck_s']:.3f} | {r['fast']} | "
                     f"{r['fast_s']:.3f} |")
    for label, group in ((f"total ({len(rows)} items)", rows),
                         ("total where slow mode ran", [r for r in rows
                                                        if r["gradcheck"] != "not run"])):
        total = {k: sum(r[k] for r in group) for k in ("harness_s", "gradcheck_s", "fast_s")}
        slow = ("not all run" if math.isnan(total["gradcheck_s"])
                else f"**{total['gradcheck_s']:.2f}**")
        lines.append(f"| **{label}** | | | **{total['harness_s']:.2f}** | | {slow} | | "
                     f"**{total['fast_s']:.2f}** |")
    return lines


def _medians(rows) -> list[str]:
    """The figures the net is held to, over all items and over the real Functions alone."""
    lines = ["| items | passing checks | harness median s | gradcheck + gradgradcheck "
             "median s | fast mode median s | harness / default | harness / fast | failing "
             "checks | failing median s | failing / passing |", "|" + "---|" * 10]
    for label, group in (("all", rows), ("real Functions", [r for r in rows if r["real"]])):
        passing = [r for r in group if r["harness"] == "pass"]
        failing = [r for r in group if r["harness"] != "pass"]
        slow = [r for r in passing if r["gradcheck"] != "not run"]
        h = statistics.median(r["harness_s"] for r in passing)
        d = statistics.median(r["gradcheck_s"] for r in slow) if slow else float("nan")
        hd = statistics.median(r["harness_s"] for r in slow) if slow else float("nan")
        f = statistics.median(r["fast_s"] for r in passing)
        fail = statistics.median(r["harness_s"] for r in failing) if failing else float("nan")
        lines.append(f"| {label} | {len(passing)} | {h:.4f} | {d:.4f} | {f:.4f} | "
                     f"{hd / d:.2f} | {h / f:.1f} | {len(failing)} | {fail:.4f} | "
                     f"{fail / h:.1f} |")
    return lines


def teardown_module():
    if not ROWS:
        return
    lines = _table(ROWS) + ["", *_medians(ROWS)]
    print(f"\n\nDefault one-call net against gradcheck with the same coverage (best of "
          f"{ROUNDS} rounds, seconds)")
    print("\n".join(lines))
    out = os.environ.get("HARNESS_COST_REPORT")
    if out:
        with open(out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    pytest.main([__file__, "--benchmark-only", "-n", "0", "-s"])
