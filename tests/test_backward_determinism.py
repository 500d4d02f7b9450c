"""The backward-determinism family (opt-in): N runs of fn and its backward on the same inputs,
bitwise identical, within the declared nondeterministic_tol, or beyond it, naming where."""

import pytest
import torch

from harness import Case, Input, check_gradients
from harness.checks import CHECKS, Settings
from harness.cli import main

from planted import _function


def _row(fn, *inputs, **kwargs):
    report = check_gradients(fn, *inputs, checks="backward-determinism", **kwargs)
    (record,) = report.records
    return record


def _noisy_at(x, g):
    noise = torch.zeros_like(x)
    noise[1, 2] = 1e-12 * (1 + torch.rand(()).item())
    return 2 * x * g + noise


NoisyAt = _function(lambda x: x * x, _noisy_at, "NoisyAt")
"""x^2 whose backward adds fresh noise of 1e-12 at element [1, 2] only."""


class ShuffledSum(torch.autograd.Function):
    """x @ w whose backward accumulates dx in a random order with index_add_, as atomic adds
    do on a GPU: the same sum, rounded differently run to run in float32."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x @ w

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        rows, inner = x.shape
        terms = (g[:, None, :] * w[None, :, :]).permute(2, 0, 1).reshape(-1, rows * inner)
        order = torch.randperm(terms.shape[0])
        dx = torch.zeros(rows * inner, dtype=x.dtype).index_add_(
            0, torch.arange(rows * inner).repeat(terms.shape[0]),
            terms[order].reshape(-1)).reshape(rows, inner)
        return dx, x.t() @ g


def _wrong_once():
    """x^2 whose backward is off by 1e-6 on its 7th call alone: a rare race."""
    calls = []

    def backward(x, g):
        calls.append(1)
        return 2 * x * g + (1e-6 if len(calls) == 7 else 0.0)

    return _function(lambda x: x * x, backward, "WrongOnce")


def test_a_deterministic_backward_is_bitwise_identical_over_the_runs():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    for fn in (torch.sin, lambda x: torch.zeros(2, dtype=x.dtype).index_add(
            0, torch.tensor([0, 1, 0]), x[:, :2].sum(1))):
        record = _row(fn, x)
        assert record.status == "pass", record.message
        assert record.message == ("bitwise identical over 10 runs of fn and its backward (same "
                                  "inputs and cotangent)")


def test_an_undeclared_spread_fails_and_names_the_element():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    record = _row(NoisyAt, x)
    assert record.status == "fail"
    assert ("The gradient of input 0 differs across 10 runs of fn and its backward (same "
            "inputs and cotangent), in 9 of the 9 reruns: 1 of 12 elements, largest spread"
            ) in record.message
    assert "at input 0[1, 2] (first run: " in record.message
    assert "declare the spread you accept" in record.message
    assert ("note: the forward was bitwise identical in every run: the nondeterminism is in "
            "the backward") in record.message


def test_a_spread_within_the_declared_tolerance_passes_and_says_how_much():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    record = _row(NoisyAt, x, nondeterministic_tol=1e-9)
    assert record.status == "pass"
    assert record.message.startswith("nondeterministic within the declared nondeterministic_tol "
                                     "1e-09 over 10 runs: the gradient of input 0: 1 of 12 "
                                     "elements, "
                                     "largest spread ")
    beyond = _row(NoisyAt, x, nondeterministic_tol=1e-13)
    assert beyond.status == "fail"
    assert "more than the declared nondeterministic_tol 1e-13" in beyond.message


def test_an_accumulation_in_random_order_differs_at_rounding_level_in_float32():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 64, generator=gen).requires_grad_()
    w = torch.randn(64, 8, generator=gen).requires_grad_()
    record = _row(ShuffledSum.apply, x, w)
    assert record.status == "fail"
    assert "The gradient of input 0 differs across 10 runs" in record.message
    assert "gradient of input 1" not in record.message  # x.t() @ g: deterministic
    within = _row(ShuffledSum.apply, x, w, nondeterministic_tol=1e-4)
    assert within.status == "pass" and "the gradient of input 0: " in within.message


def test_a_rare_difference_needs_enough_runs():
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    few = _row(_wrong_once(), x, settings=Settings(determinism_runs=5))
    assert few.status == "pass" and "bitwise identical over 5 runs" in few.message
    many = _row(_wrong_once(), x)
    assert many.status == "fail"
    assert "in 1 of the 9 reruns: 6 of 6 elements, largest spread 1e-06" in many.message


def test_a_nondeterministic_forward_is_named_as_the_origin():
    def jittery(x):
        return x * (1 + 1e-12 * torch.rand((), dtype=x.dtype))

    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    record = _row(jittery, x)
    assert record.status == "fail"
    assert "note: the forward differs too (5 of 5 elements, largest spread" in record.message
    assert "the nondeterminism starts in fn" in record.message


def test_it_is_opt_in_and_settings_refuse_fewer_than_two_runs():
    assert CHECKS["backward-determinism"].opt_in == "determinism"
    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert "backward-determinism" not in {r.check for r in check_gradients(torch.sin, x).records}
    with pytest.raises(ValueError, match="Settings.determinism_runs must be >= 2"):
        Settings(determinism_runs=1)


def test_the_cli_flag_adds_it_with_its_runs_and_bad_runs_are_usage_errors(tmp_path, capsys):
    plugin = tmp_path / "noisy.py"
    plugin.write_text('''
import torch
from harness import Case, Input
from test_backward_determinism import NoisyAt
CASES = [Case("mine/noisy", NoisyAt, [Input((3, 4))], dtypes=(torch.float64,),
              nondeterministic_tol=1e-9)]
''')
    code = main(["check", "--load", str(plugin), "--cases", "mine/*", "--check", "fd",
                 "--determinism", "--determinism-runs", "4", "--no-isolate", "--report-dir",
                 str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 rows, 1 cases: 2 pass" in out
    rows = (tmp_path / "correctness.csv").read_text()
    assert "nondeterministic within the declared nondeterministic_tol 1e-09 over 4 runs" in rows
    with pytest.raises(SystemExit) as exit_:
        main(["check", "--determinism-runs", "1", "--report-dir", str(tmp_path / "x")])
    assert exit_.value.code == 2
    assert "expected a number of runs, 2 or more" in capsys.readouterr().err


def test_a_case_can_ask_for_it_by_tag():
    case = Case("mine/tagged", torch.sin, [Input((3,))], tags=("determinism",))
    assert CHECKS["backward-determinism"].default_for(case.tags, case.checks)

