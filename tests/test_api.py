"""check_gradients / assert_gradients on functions and nn.Modules."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from harness import assert_gradients, check_gradients

import planted


def model(index=None):
    torch.manual_seed(0)
    last = planted.BuggyLinear(30, 20, index) if index else nn.Linear(30, 20)
    return nn.Sequential(OrderedDict(layer1=nn.Linear(8, 30), act=nn.Tanh(), layer2=last)).double()


def batch():
    return torch.randn(5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def test_correct_module_passes():
    report = check_gradients(model(), batch(), checks=("fd",))
    assert report.ok, str(report)


def test_wrong_parameter_element_is_named():
    report = check_gradients(model((3, 17)), batch(), checks=("fd",))
    assert not report.ok
    (record,) = report.failures
    assert record.input == "layer2.weight" and record.index == "3,17"
    assert "layer2.weight[3, 17]" in record.message
    assert "one element wrong" in record.pattern
    assert "agree: layer1.weight, layer1.bias, layer2.bias" in record.message


def test_float32_module_passes():
    report = check_gradients(model().float(), batch().float(), checks=("fd", "second-order"))
    assert report.ok, str(report)


def test_assert_gradients_raises_with_the_diagnosis():
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert_gradients(planted.square, x, grad=lambda x, v: 2 * x * v)
    with pytest.raises(AssertionError, match="sign flipped") as info:
        assert_gradients(planted.square_sign_flip, x)
    assert "SquareSignFlip float64 cpu" in str(info.value)


def test_only_inputs_that_require_grad_are_checked():
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, dtype=torch.float64)
    report = check_gradients(lambda a, b: planted.square_sign_flip(b) + a, x, y, checks=("fd",))
    assert report.ok  # the broken path only reaches y, which is not checked


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="input 0 is list"):
        check_gradients(torch.sin, [1.0])
    with pytest.raises(ValueError, match="unknown checks"):
        check_gradients(torch.sin, torch.ones(2), checks=("nope",))


def test_report_frame():
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    frame = check_gradients(torch.sin, x, checks="gradients").to_frame()
    assert list(frame["check"]) == ["analytic", "fd", "second-order"]
    assert list(frame["status"]) == ["skip", "pass", "pass"]
    assert frame["detects"].iloc[1] > 0  # a pass says what it rules out


def test_the_default_net_is_every_family_that_applies():
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    report = check_gradients(planted.square, x)
    assert report.ok, str(report)
    checks = [r.check for r in report.records]
    for family in ("fd", "second-order", "forward-ad", "fwd-over-rev", "batched-grad",
                   "layouts", "undefined-grad", "accumulation", "retain-graph"):
        assert family in checks
    assert "compiled" not in checks  # opt-in families stay opt-in
    assert [r.check for r in check_gradients(planted.square, x, checks="first-order").records
            ] == ["analytic", "fd"]
    with pytest.raises(ValueError, match="short forms"):
        check_gradients(planted.square, x, checks="everything")


def test_defaults_catch_a_backward_that_misreads_a_strided_cotangent():
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    assert check_gradients(planted.square_ignores_strides, x, checks="gradients").ok
    with pytest.raises(AssertionError, match="assumes contiguous") as info:
        assert_gradients(planted.square_ignores_strides, x)
    assert "layouts" in str(info.value) or "strided" in str(info.value)


def test_defaults_catch_a_wrong_jvp_under_a_right_backward():
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    assert check_gradients(planted.SquareWrongJvp.apply, x, checks="gradients").ok
    with pytest.raises(AssertionError, match="the jvp is wrong"):
        assert_gradients(planted.SquareWrongJvp.apply, x)


def test_module_inputs_that_require_grad_are_checked_too():
    x = batch().requires_grad_()
    report = check_gradients(model(), x, checks=("fd",))
    assert report.ok, str(report)
    bad = check_gradients(nn.Sequential(nn.Linear(8, 3).double(), _SignFlip()), x, checks=("fd",))
    (record,) = bad.failures
    assert record.input in ("0.weight", "0.bias", "input 0")
    assert "input 0" in record.message  # the batch is checked, and fails with the rest


class _SignFlip(nn.Module):
    def forward(self, x):
        return planted.square_sign_flip(x)


def test_a_passing_report_prints_each_row_and_each_skips_reason():
    """A row that did not run is never read as a pass: a float8 kernel whose op the build
    lacks prints its skip with the op named."""
    q = torch.randn(4, 4).to(torch.float8_e4m3fn).requires_grad_()
    report = check_gradients(lambda q: torch.exp(q), q,
                             reference=lambda q: torch.exp(q.double()))
    assert report.ok and str(report).startswith(
        "reference float8_e4m3fn cpu: skip (fn or its backward does not run in float8_e4m3fn")
    assert "exp_vml_cpu" in str(report)
    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    lines = str(check_gradients(torch.sin, x, checks=("fd", "analytic"))).splitlines()
    assert lines == ["analytic float64 cpu: skip (no analytic gradient declared (Case.grad is "
                     "None))", "fd float64 cpu: pass"]
