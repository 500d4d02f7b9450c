"""Benchmark: detection power on big models, the harness's fd check beside gradcheck fast mode.

Run with `python -m pytest tests/bench_power.py --benchmark-only -n 0 -s` (part of
`nox -s bench`). Six model families of tests/power_models.py (MLPs with summed and averaged
losses, a conv net, attention with layer norm, an embedding model, a GRU; PyTorch's default
initialisation, unscaled N(0, 1) data), float64 and float32; per seed a fresh model, data and
wrong element (|g| at least half its tensor's rms), its gradient scaled by 1.1, 1.5, 2 or 10.
Prints per family, dtype and factor: caught and named rates, false alarms on the correct
models over the same seeds, the largest stated `detects` beside the smallest planted error
(both relative to the element's gradient) and whether every planted error above its model's
stated figure was caught, and median seconds per check for both tools (gradcheck's without
the slow-mode run it makes to word a failure).
HARNESS_POWER_SEEDS (default 100) sets the seeds; HARNESS_POWER_FAMILIES (comma-separated)
and HARNESS_POWER_DTYPES narrow the run; HARNESS_POWER_REPORT writes the table as markdown.
HARNESS_POWER_NET=default runs the whole default net (`check_gradients` with no `checks=`)
instead of the fd family alone: a model is flagged when any family fails, named by its fd
row, and its seconds are the whole call's.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import warnings
from unittest import mock

import pytest
import torch
from power_models import FAMILIES, variant

from harness import check_gradients

SEEDS = int(os.environ.get("HARNESS_POWER_SEEDS", "100"))
FACTORS = (1.1, 1.5, 2.0, 10.0)
_wanted = os.environ.get("HARNESS_POWER_FAMILIES")
SELECTED = [f for f in FAMILIES if not _wanted or f.name in _wanted.split(",")]
DTYPES = os.environ.get("HARNESS_POWER_DTYPES", "float64,float32").split(",")
NET = os.environ.get("HARNESS_POWER_NET", "fd")
ROWS = []


def _gradcheck_fast(v) -> bool:
    """gradcheck fast mode's verdict. On a failure gradcheck builds its message by running
    slow mode (the whole Jacobian: ~50 s at 10^5 parameters); that is left out of its time
    here, so the figure is its verdict's cost alone."""
    with mock.patch.object(sys.modules["torch.autograd.gradcheck"],
                           "_run_slow_mode_and_get_error",
                           lambda *args, **kwargs: "(slow-mode message skipped)"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # float32 inputs: gradcheck warns, and is run
            return torch.autograd.gradcheck(v.loss, v.params, fast_mode=True,
                                            raise_exception=False)


def _harness(v):
    """(the fd record, whether the net flagged the model)."""
    if NET == "default":
        report = check_gradients(v.loss, *v.params, name=v.family)
        (record,) = [r for r in report.records if r.check == "fd"]
        return record, not report.ok
    (record,) = check_gradients(v.loss, *v.params, checks=("fd",), name=v.family).records
    return record, record.status != "pass"


def _sweep(family, dtype: torch.dtype) -> list[dict]:
    rows = []
    for seed in range(SEEDS):
        stated = None
        for factor in (1.0, *FACTORS):
            v = variant(family, seed, dtype, factor)
            start = time.perf_counter()
            record, flagged = _harness(v)
            seconds = time.perf_counter() - start
            start = time.perf_counter()
            gradcheck_ok = _gradcheck_fast(v)
            gradcheck_seconds = time.perf_counter() - start
            k = v.names.index(v.wrong)
            named = (record.status == "fail" and record.input == f"input {k}"
                     and record.index == ",".join(map(str, v.index)))
            error = abs((factor - 1.0) * v.true_grad)
            if factor == 1.0:
                stated = record.detects if record.status == "pass" else None
            rows.append(dict(family=family.name, dtype=str(dtype).removeprefix("torch."),
                             seed=seed, factor=factor, status=record.status, named=named,
                             flagged=flagged,
                             error=error, grad=abs(v.true_grad), stated=stated,
                             seconds=seconds, gradcheck_fails=not gradcheck_ok,
                             gradcheck_seconds=gradcheck_seconds))
    return rows


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("family", SELECTED, ids=lambda f: f.name)
def test_power(benchmark, family, dtype):
    rows = benchmark.pedantic(_sweep, args=(family, getattr(torch, dtype)), rounds=1,
                              iterations=1)
    ROWS.extend(rows)


def _table(rows) -> list[str]:
    lines = ["| family | dtype | factor | flagged | named | gradcheck fast flags | largest "
             "detects/abs(g) | smallest error/abs(g) | above detects caught | s/check | "
             "gradcheck s |", "|" + "---|" * 11]
    keys = sorted({(r["family"], r["dtype"], r["factor"]) for r in rows},
                  key=lambda k: ([f.name for f in FAMILIES].index(k[0]), k[1], k[2]))
    for family, dtype, factor in keys:
        group = [r for r in rows if (r["family"], r["dtype"], r["factor"]) == (family, dtype,
                                                                              factor)]
        n = len(group)
        flagged = sum(r["flagged"] for r in group)
        named = sum(r["named"] for r in group)
        gc = sum(r["gradcheck_fails"] for r in group)
        stated = [r["stated"] / r["grad"] for r in group if r["stated"] is not None]
        if factor == 1.0:
            errors, above = "", ""
        else:
            errors = f"{min(r['error'] / r['grad'] for r in group):.3g}"
            over = [r for r in group if r["stated"] is not None and r["error"] > r["stated"]]
            above = f"{sum(r['status'] == 'fail' for r in over)}/{len(over)}"
        largest = f"{max(stated):.3g}" if stated else ""
        lines.append(
            f"| {family} | {dtype} | x{factor:g} | {flagged}/{n} | "
            f"{'' if factor == 1.0 else f'{named}/{n}'} | {gc}/{n} | {largest} | {errors} | "
            f"{above} | {statistics.median(r['seconds'] for r in group):.3f} | "
            f"{statistics.median(r['gradcheck_seconds'] for r in group):.3f} |")
    lines += ["", "| family | dtype | checks | median s/check, every factor | largest s/check |",
              "|---|---|---|---|---|"]
    for family, dtype in sorted({(r["family"], r["dtype"]) for r in rows},
                                key=lambda k: ([f.name for f in FAMILIES].index(k[0]), k[1])):
        seconds = [r["seconds"] for r in rows if (r["family"], r["dtype"]) == (family, dtype)]
        lines.append(f"| {family} | {dtype} | {len(seconds)} | "
                     f"{statistics.median(seconds):.3f} | {max(seconds):.3f} |")
    return lines


def teardown_module():
    if not ROWS:
        return
    lines = _table(ROWS)
    print(f"\n\nDetection power, {SEEDS} seeds per family and dtype, net: {NET} (x1: the "
          "correct model; flagged there is a false alarm)")
    print("\n".join(lines))
    out = os.environ.get("HARNESS_POWER_REPORT")
    if out:
        with open(out, "w") as f:
            f.write("\n".join(lines) + "\n")
