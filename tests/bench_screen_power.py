"""Benchmark: what the fd screen's one direction catches, by error pattern, beside gradcheck fast.

    python -m pytest tests/bench_screen_power.py --benchmark-only -n 0 -s

A float64 function of one input of n elements with a dense Jacobian gets a backward that adds
an error of k allowances (the harness's float64 element allowance, rtol |g_i| + atol max|g|
+ floor, of the backward's own correct gradient) on a pattern of elements: one element, every
element by one constant (a forgotten mean), every element, a random half (each of one sign
or of random signs), and every element in proportion to g (a scale error). Each pattern, k
and n runs over HARNESS_SCREEN_SEEDS seeds (default 40); it prints how many seeds
`check_gradients(..., checks="fd")` fails at with the screen as it is (one direction where a
doubt goes element by element, n <= 64), with a second, all-positive direction there too
(screen.SCREEN_DIRECTIONS = 2, the screen before Dec 2026, twice the forward calls), and
gradcheck's fast mode. Asserted: no false alarm, and where inputs go element by element an
error of 5 or more allowances on one element or a constant on every element caught at every
seed (what the screen guarantees); the other patterns are measured, not asserted.
"""

from __future__ import annotations

import os

import pytest
import torch

from harness import check_gradients
from harness.numerics import screen
from harness.tolerances import TOLERANCES

SEEDS = int(os.environ.get("HARNESS_SCREEN_SEEDS", "40"))
SIZES = (3, 8, 16, 64, 500)
ALLOWANCES = (2, 5, 20)
PATTERNS = ("one element", "constant", "all, one sign", "all, mixed signs", "half, one sign",
            "half, mixed signs", "scale")
GUARANTEED = ("one element", "constant")
ROWS = []


def f(x):
    return torch.tanh(x) * x + x.sum() ** 2 / x.numel()


def _allowance(g: torch.Tensor) -> torch.Tensor:
    tol = TOLERANCES[torch.float64]
    return tol.rtol * g.abs() + tol.atol * g.abs().max() + tol.floor


def _error(pattern: str, k: float, gen: torch.Generator, n: int):
    """g -> the error added to the correct gradient g: a fixed pattern, k allowances."""
    signs = torch.randint(0, 2, (n,), generator=gen).double() * 2 - 1
    half = torch.randperm(n, generator=gen)[: max(n // 2, 1)]
    one = int(torch.randint(0, n, (1,), generator=gen))
    sign = float(signs[0])

    def error(g):
        a = _allowance(g)
        e = torch.zeros_like(g)
        if pattern == "one element":
            e[one] = sign * k * a[one]
        elif pattern == "constant":
            e[:] = sign * k * float(a.max())
        elif pattern.startswith("all"):
            e = k * a * (sign if "one sign" in pattern else signs)
        elif pattern.startswith("half"):
            e[half] = k * a[half] * (sign if "one sign" in pattern else signs[half])
        else:  # scale: g (1 + k rtol), every element k rtol |g_i| off
            e = k * TOLERANCES[torch.float64].rtol * g
        return e

    return error


def _planted(error):
    class Planted(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return f(x)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            with torch.enable_grad():
                leaf = x.detach().requires_grad_()
                (g,) = torch.autograd.grad(f(leaf), leaf, grad)
            if error is None or not bool(grad.any()):
                return g  # no error where grad_output is 0, as a real bug's (gradcheck looks)
            return g + error(g)

    return Planted.apply


def _gradcheck_fast_fails(fn, x) -> bool:
    try:
        return not torch.autograd.gradcheck(fn, (x,), fast_mode=True, raise_exception=False)
    except Exception:  # noqa: BLE001 - a raise is a failure here
        return True


def _rate(pattern, k, n, monkeypatch) -> tuple[int, int, int]:
    """Failing seeds: the harness as it is, with two screen directions, gradcheck fast."""
    one = two = theirs = 0
    for seed in range(SEEDS):
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(n, generator=gen, dtype=torch.float64, requires_grad=True)
        fn = _planted(None if pattern is None else _error(pattern, k, gen, n))
        one += not check_gradients(fn, x, checks="fd", seed=seed).ok
        with monkeypatch.context() as patched:
            patched.setattr(screen, "SCREEN_DIRECTIONS", 2)
            two += not check_gradients(fn, x, checks="fd", seed=seed).ok
        theirs += _gradcheck_fast_fails(fn, x)
    return one, two, theirs


def test_screen_power(benchmark, monkeypatch):
    def sweep():
        for n in SIZES:
            ROWS.append(("correct", 0, n, *_rate(None, 0, n, monkeypatch)))
            for pattern in PATTERNS:
                for k in ALLOWANCES:
                    ROWS.append((pattern, k, n, *_rate(pattern, k, n, monkeypatch)))

    benchmark.pedantic(sweep, rounds=1, iterations=1)
    lines = [f"Seeds of {SEEDS} that fail: harness (one screen direction) / harness (two) / "
             "gradcheck fast, by n (elements)", "",
             "| error | allowances | " + " | ".join(f"n={n}" for n in SIZES) + " |",
             "|---|---|" + "---|" * len(SIZES)]
    for pattern in ("correct", *PATTERNS):
        for k in ((0,) if pattern == "correct" else ALLOWANCES):
            cells = [" / ".join(map(str, r[3:])) for r in ROWS if r[:2] == (pattern, k)]
            lines.append(f"| {pattern} | {k} | " + " | ".join(cells) + " |")
    print("\n" + "\n".join(lines))
    alarms = [r for r in ROWS if r[0] == "correct" and (r[3] or r[4])]
    missed = [r for r in ROWS
              if r[0] in GUARANTEED and r[1] >= 5 and r[2] <= 64 and r[3] < SEEDS]
    assert not alarms, alarms
    assert not missed, missed


if __name__ == "__main__":
    pytest.main([__file__, "--benchmark-only", "-n", "0", "-s"])
