"""The built-in cases reproduce the tutorials' printed values, and the wrong ones are explained."""

import math

import pytest
import torch

from gradharness_cases import all_cases
from harness import diagnose

CASES = {c.name: c for c in all_cases()}
T = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731


def test_every_tutorial_example_is_a_case():
    tutorial = {n for n in CASES if n.startswith("tutorial/")}
    assert len(tutorial) == 20  # 14 worked examples, 002's two re-runs, 4 training loops
    assert {"block/exp", "block/tanh", "block/sigmoid", "block/softplus", "block/softmax",
            "block/logsumexp", "block/matmul", "block/l2-norm", "block/cross-entropy",
            "block/layer-norm", "block/conv1d"} <= set(CASES)


@pytest.mark.parametrize("name, inputs, expected", [
    ("tutorial/scalar-chain", (T(2.0)[0],), (T(400.0)[0],)),
    ("tutorial/sum-p-minus-p2-squared", (T(1, 3, 2, 2),), (T(0, 60, 12, 12),)),
    ("tutorial/poly", (T(3.0)[0],), (T(22.0)[0],)),
    ("tutorial/dot", (T(1, 2, 3),), (T(2, 4, 6),)),
    ("tutorial/sum", (T(1, 2, 3),), (T(1, 1, 1),)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_scalar_gradients_match_the_notebooks(name, inputs, expected):
    got = CASES[name].grad(*inputs)
    got = got if isinstance(got, tuple) else (got,)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)


def test_q_external_gradient_matches_the_notebook():
    a, b = T(2, 3), T(6, 4)
    ga, gb = CASES["tutorial/q-external-grad"].grad(a, b, T(1, 1))
    torch.testing.assert_close(ga, T(36, 81))
    torch.testing.assert_close(gb, T(-12, -8))


def test_sin_linspace_gradient_is_2cos():
    case = CASES["tutorial/sin-linspace"]
    a = case.inputs(torch.Generator())[0].detach()
    assert a.numel() == 25 and float(a[-1]) == pytest.approx(2 * math.pi)
    torch.testing.assert_close(case.grad(a), 2 * torch.cos(a))


def test_notebook_printed_values_are_diagnosed_as_accumulation():
    """002 printed 66 for dy/dx at x=3 and [72, 162] / [-24, -16] for Q's gradients."""
    expected, printed = T(22.0), T(66.0)
    tol = torch.zeros(1)
    bad = torch.ones(1, dtype=torch.bool)
    assert "exactly 3 times" in diagnose.pattern(expected, printed, bad, tol)
    a, b = T(2, 3), T(6, 4)
    ga, gb = CASES["tutorial/q-external-grad"].grad(a, b, T(1, 1))
    bad = torch.ones(2, dtype=torch.bool)
    for right, shown in ((ga, T(72, 162)), (gb, T(-24, -16))):
        text = diagnose.pattern(right, shown, bad, torch.zeros(2))
        assert "exactly 2 times" in text and "zero .grad" in text


def test_tiny_model_backprop_by_hand_matches_autograd():
    case = CASES["tutorial/tiny-model"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 1000, generator=gen, dtype=torch.float64)
    y = torch.randn(16, 10, generator=gen, dtype=torch.float64)
    params = [torch.randn(s, generator=gen, dtype=torch.float64).mul_(0.05).requires_grad_()
              for s in ((100, 1000), (100,), (10, 100), (10,))]
    auto = torch.autograd.grad(case.fn(x, y, *params), params)
    for a, h in zip(auto, case.grad(x, y, *[p.detach() for p in params])):
        torch.testing.assert_close(a, h)


def test_notebook_reruns_are_diagnosed_as_accumulation_from_the_formula_side():
    from harness.checks import Settings
    from harness.plan import items_for
    from harness.runner import run_item

    case = CASES["tutorial/notebook-002-poly-rerun"]
    (item,) = items_for([case], ["analytic"], [torch.float64], ["cpu"])
    record = run_item(item, Settings())
    assert record.status == "xfail"  # it fails, as the case expects
    assert "worst at x: analytic 66, autograd 22" in record.message
    assert "exactly 3 times the reference" in record.message
