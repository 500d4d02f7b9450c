"""The baseline-relative rule for low precision (flash-attention's): a bfloat16 kernel may be off
the float64 reference by at most k times the reference computed in bfloat16 itself. Every
bfloat16 reference row reports both errors, their ratio and the SQNR; Case.baseline_ratio
makes the rule decide."""

import math
import re

import pytest
import torch
from checking import on_case

from harness import Case, Input
from harness.checks import Settings
from harness.numerics.baseline import baseline, sqnr_db

BF16 = torch.bfloat16


def reference(x):
    return torch.tanh(x) * 2


def one_percent_off(x):
    """+-1% in a pattern that averages to zero: no bias for the average test to see."""
    wobble = 1 + 0.01 * torch.sign(torch.sin(x.float() * 997.0))
    return (torch.tanh(x.float()) * 2 * wobble).to(x.dtype)


def via_sigmoid(x):
    """Right, by another route through more bfloat16 roundings than the reference's."""
    return (torch.sigmoid(2 * x) * 2 - 1) * 2


def _case(fn, ratio=2.0, ref=reference):
    return Case(name=f"t/{fn.__name__}", fn=fn, reference=ref, baseline_ratio=ratio,
                inputs=[Input((64, 32), low=-2, high=2, name="x")])


def _ratios(message: str) -> list[float]:
    return [float(r) for r in re.findall(r"RMS error [^,]+, ([0-9.]+)x (?:the reference|one "
                                         r"rounding)", message)]


def test_the_rule_in_numbers():
    want = torch.ones(4, dtype=torch.float64)
    b = baseline(want * 1.01, want * 1.004, want, BF16, ratio=2.0)
    assert b.error == pytest.approx(0.01, rel=1e-12)
    assert b.reference_error == pytest.approx(0.004, rel=1e-12)
    assert b.times == pytest.approx(2.5, rel=1e-12) and not b.holds
    assert baseline(want * 1.006, want * 1.004, want, BF16, ratio=2.0).holds
    assert b.sqnr_db == pytest.approx(40.0, abs=1e-9)  # 10 log10(1 / 0.01^2)
    assert b.floor == pytest.approx(torch.finfo(BF16).eps / 2 / math.sqrt(3), rel=1e-12)
    exact = baseline(want, want, want, BF16, ratio=2.0)  # a reference exact in the dtype
    assert exact.holds and exact.times == 0.0 and math.isinf(exact.sqnr_db)
    assert sqnr_db(want, want * 1.1) == pytest.approx(20.0, abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_bfloat16_kernel_one_percent_off_fails_the_baseline_rule(seed):
    settings = Settings(seed=seed)
    alone = on_case("reference", _case(one_percent_off, ratio=None), BF16, settings)
    assert alone.status == "pass"  # within the bfloat16 allowance element by element
    record = on_case("reference", _case(one_percent_off), BF16, settings)
    assert record.status == "fail"
    # the bar is the reference's own error or, where more, one rounding to bfloat16
    assert re.search(r"x (the reference's own error in|one rounding to) bfloat16 \([^)]*; at "
                     r"most 2x\)", record.pattern), record.pattern
    assert "each element is within its allowance" in record.message
    output = re.search(r"output: RMS error ([0-9.e-]+), ([0-9.]+)x .*?reference's own error "
                       r"(?:in bfloat16 \()?([0-9.e-]+)", record.message)
    error, times, own = float(output[1]), float(output[2]), float(output[3])
    scale = float(reference(torch.linspace(-2, 2, 1001, dtype=torch.float64)).pow(2)
                  .mean().sqrt())
    assert 0.001 < own / scale < 0.004  # the reference's own bfloat16 error: 0.13% here
    assert 0.008 < error / scale < 0.012 and times > 2  # the kernel's: ~1%


@pytest.mark.parametrize("seed", range(5))
def test_a_correct_kernel_within_twice_the_references_error_passes(seed):
    record = on_case("reference", _case(via_sigmoid), BF16, Settings(seed=seed))
    assert record.status == "pass", record.message
    ratios = _ratios(record.message)
    assert len(ratios) == 2 and max(ratios) > 1.0 and all(r <= 2 for r in ratios)


def test_every_bfloat16_row_reports_both_errors_the_ratio_and_sqnr():
    record = on_case("reference", _case(via_sigmoid, ratio=None), BF16)
    assert record.status == "pass"
    assert re.search(r"output: RMS error [0-9.e-]+, [0-9.]+x (the reference's own error in "
                     r"bfloat16 \([0-9.e-]+|one rounding to bfloat16 \([0-9.e-]+, more than the "
                     r"reference's own error [0-9.e-]+)\), SQNR [0-9.]+ dB against the "
                     r"reference's [0-9.]+ dB",
                     record.message), record.message
    assert "at most" not in record.message  # no bound where none was set


def test_a_reference_that_cannot_run_in_the_dtype_says_so():
    def float_only(x):
        if x.dtype == BF16:
            raise TypeError("no bfloat16 kernel")
        return reference(x)

    record = on_case("reference", _case(via_sigmoid, ref=float_only), BF16)
    assert record.status == "pass"
    assert ("the reference cannot run in bfloat16 (TypeError: no bfloat16 kernel): no "
            "baseline-relative verdict" in record.message)


def test_a_ratio_below_one_is_refused():
    with pytest.raises(ValueError, match="baseline_ratio must be at least 1"):
        _case(via_sigmoid, ratio=0.5)


def _float32_case(fn, on=True):
    return Case(name=f"t/{fn.__name__}-f32", fn=fn, reference=reference, baseline_float32=on,
                inputs=[Input((64, 32), low=-2, high=2, name="x")], dtypes=(torch.float32,))


def ten_ppm_off(x):
    """1e-5 relative in a pattern that averages to zero: within float32's rtol (3e-5), 80
    float32 roundings off the reference."""
    return reference(x) * (1 + 1e-5 * torch.sign(torch.sin(x * 997.0)))


class _Tanh2(torch.autograd.Function):
    """2 tanh(x) with its backward written by hand, 2 (1 - tanh^2) grad: right, and as
    accurate in float32 as autograd's own."""

    @staticmethod
    def forward(ctx, x):
        t = torch.tanh(x)
        ctx.save_for_backward(t)
        return 2 * t

    @staticmethod
    def backward(ctx, grad):
        (t,) = ctx.saved_tensors
        return grad * 2 * (1 - t * t)


def hand_written(x):
    return _Tanh2.apply(x)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_rule_as_an_option_in_float32(seed):
    settings = Settings(seed=seed)
    assert on_case("reference", _float32_case(ten_ppm_off, on=False), torch.float32,
                   settings).status == "pass"  # float32's per-element tolerance lets it by
    record = on_case("reference", _float32_case(ten_ppm_off), torch.float32, settings)
    assert record.status == "fail"
    assert re.search(r"x (the reference's own error in|one rounding to) float32 \([^)]*; at "
                     r"most 2x\)", record.pattern), record.pattern
    right = on_case("reference", _float32_case(hand_written), torch.float32, settings)
    assert right.status == "pass", right.message
    assert len(_ratios(right.message)) == 2  # output and x, measured in float32
