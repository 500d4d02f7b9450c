"""Float8 kernels (cases/float8.py): cast-out and cast-in kernels and a scaled matmul, held to
their references in float64 at the same float8 values and, by default in float8, to the
reference's own float8 rounding (the baseline rule, ratio 2). Correct kernels pass; planted
errors fail with the tensor named; an fp8 op the build lacks is a skip that names it."""

import re
from dataclasses import replace

import pytest
import torch
from checking import on_case

from gradharness_cases import float8 as f8
from harness import Case, Input
from harness.checks import Settings
from harness.plan import Selection

CASES = {c.name: c for c in f8.FLOAT8_CASES}
RUNS = [("kernel/fp8-quantize", torch.float32), ("kernel/fp8-dequantize", f8.E4M3),
        ("kernel/fp8-dequantize", f8.E5M2), ("kernel/fp8-scaled-mm", f8.E4M3)]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("name", "dtype"), RUNS)
def test_correct_float8_kernels_pass_with_the_baseline_figures(name, dtype, seed):
    record = on_case("reference", CASES[name], dtype, Settings(seed=seed))
    assert record.status == "pass", record.message
    ratios = re.findall(r"RMS error [^,]+, ([0-9.]+)x (?:the reference's own error in|one "
                        r"rounding to) float8_e(?:4m3fn|5m2) \([^)]*; at most 2x\), SQNR",
                        record.message)
    assert ratios and all(float(r) <= 2 for r in ratios), record.message


def test_a_scaled_matmul_gradient_eight_percent_off_fails_by_the_baseline_rule(monkeypatch):
    monkeypatch.setattr(f8.ScaledMatmul, "scale_error", 1.08)
    case = CASES["kernel/fp8-scaled-mm"]
    alone = on_case("reference", replace(case, baseline_ratio=1e9), f8.E4M3)
    assert alone.status == "pass"  # within float8's two-rounding allowance, element by element
    record = on_case("reference", case, f8.E4M3)
    assert record.status == "fail"
    assert re.search(r"x (the reference's own error in|one rounding to) float8_e4m3fn \("
                     r"[^)]*; at most 2x\)", record.pattern), record.pattern
    assert " a:" in record.message and "\n b:" not in record.message  # da is wrong, db is not


def test_a_cast_out_kernel_whose_gradient_is_one_percent_off_fails(monkeypatch):
    """The output is float8, its gradient float32: the gradient is held to float32's
    tolerance at the float8-rounded cotangent autograd hands the backward."""
    case = CASES["kernel/fp8-quantize"]
    assert on_case("reference", case, torch.float32).status == "pass"
    monkeypatch.setattr(f8.Quantize, "scale_error", 1.01)
    record = on_case("reference", case, torch.float32)
    assert record.status == "fail"
    assert "actual = 1.01 x expected" in record.pattern, record.pattern


def test_a_cast_in_kernel_that_forgets_its_scale_in_backward_fails(monkeypatch):
    monkeypatch.setattr(f8.Dequantize, "scale_error", 1 / f8.DEQUANT_SCALE)
    for dtype in (f8.E4M3, f8.E5M2):
        record = on_case("reference", CASES["kernel/fp8-dequantize"], dtype)
        assert record.status == "fail", record.message
        assert re.search(r"actual = 2\.[67]\d* x expected", record.pattern), record.pattern
        assert "\n q:" in record.message
        # fn's outputs are fn's: the reference's (which shaped the cotangents) are not kept as
        # them, so no determinism finding compares the two
        assert "not deterministic" not in record.message


def test_a_cast_in_kernels_float32_output_ten_percent_off_fails(monkeypatch):
    monkeypatch.setattr(f8.Dequantize, "output_error", 1.1)
    record = on_case("reference", CASES["kernel/fp8-dequantize"], f8.E4M3)
    assert record.status == "fail"
    assert "\n output:" in record.message and "\n q:" not in record.message


def test_a_whole_gradient_off_by_a_factor_is_named_in_float8(monkeypatch):
    """float8 inputs are not jittered to measure noise: a factor's own change under a jitter
    would widen every element's allowance and hide the factor."""
    monkeypatch.setattr(f8.ScaledMatmul, "scale_error", 1 / (f8.SCALE_A * f8.SCALE_B))
    record = on_case("reference", CASES["kernel/fp8-scaled-mm"], f8.E4M3)
    assert record.status == "fail"
    assert re.match(r"off by a constant factor [78]\.\d+", record.pattern), record.pattern


def test_a_float8_op_the_build_lacks_is_a_skip_that_names_it():
    def fp8_exp(q):
        return torch.exp(q)  # no float8 exp kernel on the CPU

    case = Case(name="t/fp8-exp", fn=fp8_exp, reference=lambda q: torch.exp(q.double()),
                inputs=[Input((4, 4), name="q")], dtypes=(f8.E4M3,), checks=("reference",))
    record = on_case("reference", case, f8.E4M3)
    assert record.status == "skip"
    assert re.search(r"does not run in float8_e4m3fn on cpu \(NotImplementedError: \S*exp\S* "
                     r"not implemented for 'Float8_e4m3fn'\)", record.message), record.message


def test_float8_runs_in_the_reference_family_alone_and_needs_a_reference():
    case = Case(name="t/fp8-both", fn=f8.dequantize, reference=f8.dequantized,
                inputs=[Input((4, 4), name="q")], dtypes=(torch.float32, f8.E4M3))
    items = Selection(devices=("cpu",)).items([case])
    in_float8 = {item.check for item in items if item.dtype == f8.E4M3}
    assert in_float8 == {"reference"}
    assert {"fd", "reference"} <= {item.check for item in items if item.dtype == torch.float32}
    with pytest.raises(ValueError, match="float8_e4m3fn runs in the reference family only"):
        Case(name="t/fp8-alone", fn=f8.dequantize, inputs=[Input((4,))], dtypes=(f8.E4M3,))
