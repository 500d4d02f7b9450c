"""Benchmark: the harness vs torch.autograd.gradcheck on the tutorials' TinyModel.

Run with `nox -s bench` or `python -m pytest tests/bench_checks.py --benchmark-only -n 0 -s`.
Loss as a function of all 101,110 parameters (float64), the correct model and one whose
layer1.weight[37, 512] gradient is scaled by 1.5, 2 or 10. Prints verdict and time per tool,
and the time of the quick input search over the whole built-in registry. gradcheck's slow
mode takes 1-2 minutes per variant here; set HARNESS_BENCH_SLOW=1 to include it.
"""

import os
import time

import pytest
import torch

from gradharness_cases.tutorials import _tiny_model
from harness import check_gradients

from planted import LinearWrongElement

WRONG_AT = (37, 512)
VERDICTS = []


def _model(factor):
    def loss(x, y, w1, b1, w2, b2):
        if factor == 1.0:
            return _tiny_model(x, y, w1, b1, w2, b2)
        hidden = torch.relu(LinearWrongElement.apply(x, w1, b1, WRONG_AT, factor))
        return (((hidden @ w2.T + b2) - y) ** 2).mean()

    return loss


def _inputs():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 1000, generator=gen, dtype=torch.float64)
    y = torch.randn(16, 10, generator=gen, dtype=torch.float64)
    params = [(torch.rand(s, generator=gen, dtype=torch.float64) * 2 - 1) * scale
              for s, scale in (((100, 1000), 0.03), ((100,), 0.03), ((10, 100), 0.1),
                               ((10,), 0.1))]
    return x, y, *[p.requires_grad_() for p in params]


def _harness(fn, inputs):
    return check_gradients(fn, *inputs, checks=("fd",), name="tiny-model")


def _gradcheck(fn, inputs, fast_mode=True):
    try:
        return torch.autograd.gradcheck(fn, inputs, fast_mode=fast_mode, raise_exception=True)
    except RuntimeError:
        return False


@pytest.mark.parametrize("factor", [1.0, 1.5, 2.0, 10.0], ids=lambda f: f"x{f:g}")
@pytest.mark.parametrize("tool", ["harness", "gradcheck-fast"]
                         + (["gradcheck-slow"] if os.environ.get("HARNESS_BENCH_SLOW") else []))
def test_tiny_model(benchmark, tool, factor):
    fn, inputs = _model(factor), _inputs()
    run = {"harness": _harness, "gradcheck-fast": _gradcheck,
           "gradcheck-slow": lambda f, i: _gradcheck(f, i, fast_mode=False)}[tool]
    start = time.perf_counter()
    result = benchmark.pedantic(run, args=(fn, inputs), rounds=3 if factor == 1.0 else 1,
                                iterations=1)
    seconds = (time.perf_counter() - start) / (3 if factor == 1.0 else 1)
    if tool == "harness":
        record = result.records[0]
        verdict = record.status
        detail = f"{record.input}[{record.index}] {record.pattern[:60]}" if record.index else ""
    else:
        verdict, detail = ("pass" if result else "fail"), ""
    VERDICTS.append((tool, factor, verdict, seconds, detail))
    expected = "pass" if factor == 1.0 else "fail"
    if tool == "harness":
        assert verdict == expected


def test_quick_search_over_the_registry(benchmark):
    from harness.checks import Settings
    from harness.plan import items_for
    from harness.registry import load
    from harness.runner import run_item

    items = items_for(load().cases, ["search"], devices=["cpu"])
    start = time.perf_counter()
    records = benchmark.pedantic(
        lambda: [run_item(item, Settings()) for item in items], rounds=1)
    VERDICTS.append(("search-quick", len(items), "pass" if all(
        r.status == "pass" for r in records) else "fail", time.perf_counter() - start,
        "whole built-in registry, quick profile (items)"))


def teardown_module():
    print("\n\nTinyModel (101,110 parameters, float64), one wrong layer1.weight gradient")
    print(f"{'tool':<16}{'factor':>7}  {'verdict':<8}{'seconds':>9}  where")
    for tool, factor, verdict, seconds, detail in VERDICTS:
        print(f"{tool:<16}{factor:>7g}  {verdict:<8}{seconds:>9.3f}  {detail}")
