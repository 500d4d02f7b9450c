"""The reference families: a kernel's output, gradient, second order and jvp against its
reference implementation's float64 autograd (Case.reference, check_gradients(reference=))."""

import pytest
import torch
from checking import on_case

from gradharness_cases import kernels
from harness import Case, Input, check_gradients
from harness.plan import items_for

DTYPES = [torch.float64, torch.float32, torch.bfloat16]
SOFTMAX_CE, LAYER_NORM = kernels.KERNEL_CASES
FAMILIES = ["reference", "reference-second-order", "reference-forward-ad"]


@pytest.fixture
def planted_one_percent(monkeypatch):
    """Both hand-written backwards 1% off in one input's gradient (logits, x)."""
    monkeypatch.setattr(kernels.FusedSoftmaxCrossEntropy, "scale", 1.01)
    monkeypatch.setattr(kernels.FusedLayerNorm, "scale", 1.01)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", kernels.KERNEL_CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("check", FAMILIES)
def test_correct_kernels_agree_with_their_reference(case, dtype, check):
    record = on_case(check, case, dtype)
    assert record.status == "pass", record.message
    assert f"fn ran in {str(dtype).removeprefix('torch.')} on cpu, the reference in float64" \
        in record.message


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case, wrong", [(SOFTMAX_CE, "logits"), (LAYER_NORM, "x")],
                         ids=["softmax-ce", "layer-norm"])
def test_a_kernel_one_percent_off_fails_naming_the_input_worst_element_and_pattern(
        planted_one_percent, case, wrong, dtype):
    record = on_case("reference", case, dtype)
    assert record.status == "fail", record.message
    assert record.input == wrong and record.index
    assert f" {wrong}:\n" in record.message and f"worst at {wrong}[" in record.message
    assert "agree: output" in record.message  # the forward is right
    if dtype == torch.bfloat16:  # every element within bfloat16's rounding: the average shows
        assert "off by about a factor 1.01 on average" in record.pattern
        assert "each element is within its allowance" in record.message
    else:
        assert "off by a constant factor 1.01" in record.pattern
    if dtype == torch.float64:
        assert "fn's backward (the kernel's hand-written gradient) is wrong" in record.message
    else:
        assert "finite differences not consulted: fn ran in" in record.message


def test_the_second_order_of_a_wrong_backward_differs_too(planted_one_percent):
    record = on_case("reference-second-order", LAYER_NORM, torch.float64)
    assert record.status == "fail" and record.input == "x", record.message


class WrongJvpLayerNorm(kernels.FusedLayerNorm):
    @staticmethod
    def jvp(ctx, dx, dweight, dbias):
        return 1.01 * kernels.FusedLayerNorm.jvp(ctx, dx, dweight, dbias)


def test_a_wrong_jvp_fails_forward_mode_only():
    x, w, b = (torch.randn(8, 16, dtype=torch.float64, requires_grad=True),
               torch.rand(16, dtype=torch.float64, requires_grad=True) + 0.5,
               torch.randn(16, dtype=torch.float64, requires_grad=True))
    report = check_gradients(WrongJvpLayerNorm.apply, x, w, b, reference=kernels.eager_layer_norm,
                             checks=FAMILIES)
    status = {(r.check, r.dtype): r.status for r in report.records}
    assert status[("reference-forward-ad", "float64")] == "fail"
    assert status[("reference", "float64")] == "pass"
    failed = next(r for r in report.failures if r.dtype == "float64")
    assert "output along u on input 0" in failed.message and "factor 1.01" in failed.pattern


class WrongReference(torch.autograd.Function):
    """A reference whose own backward is wrong: the kernel is right."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 1.5 * g * x.cos()


def test_finite_differences_say_when_the_reference_is_the_wrong_one():
    x = torch.randn(20, dtype=torch.float64, requires_grad=True)
    report = check_gradients(torch.sin, x, reference=WrongReference.apply, checks=["reference"])
    (record,) = [r for r in report.records if r.dtype == "float64"]
    assert record.status == "fail"
    assert "agree with fn's gradient, not with the reference's" in record.message


def test_a_wrong_forward_fails_on_the_output():
    x = torch.randn(6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0),
                    requires_grad=True)
    record = check_gradients(lambda t: torch.softmax(t, -1) * 1.001, x,
                             reference=lambda t: torch.softmax(t, -1),
                             checks=["reference"]).records[0]
    # the gradient is 1.001x too, and as far over its allowance: which one is shown worst is
    # a coin toss between the two; the output's own verdict must fail
    assert record.status == "fail", record.message
    output = record.message.split("\n output:\n", 1)[1].splitlines()
    assert output[0].strip().startswith("mismatched elements: 42 / 42"), record.message


class OnceDifferentiableSin(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x.cos()


def test_what_fn_does_not_support_is_a_skip_that_says_so():
    x = torch.randn(10, dtype=torch.float64, requires_grad=True)
    report = check_gradients(OnceDifferentiableSin.apply, x, reference=torch.sin,
                             checks=FAMILIES)
    by_check = {r.check: r for r in report.records if r.dtype == "float64"}
    assert by_check["reference"].status == "pass"
    assert by_check["reference-second-order"].status == "skip"
    assert "no second derivative to compare" in by_check["reference-second-order"].message
    assert by_check["reference-forward-ad"].status == "skip"
    assert "add a jvp staticmethod" in by_check["reference-forward-ad"].message


def test_a_module_is_checked_against_a_reference_module_with_the_same_parameters():
    torch.manual_seed(0)
    fused = torch.nn.Linear(5, 3).double()
    eager = torch.nn.Linear(5, 3).double()  # other values: functional_call gives it fused's
    x = torch.randn(4, 5, dtype=torch.float64)
    record = check_gradients(fused, x, reference=eager, checks=["reference"]).records[0]
    assert record.status == "pass", record.message
    wrong = check_gradients(fused, x, reference=lambda t: 2 * fused(t),
                            checks=["reference"]).records[0]
    assert wrong.status == "fail"


def test_only_cases_with_a_reference_get_the_reference_families_in_half_precision_too():
    plain = Case("plain", torch.sin, [Input((3,))])
    assert not [i for i in items_for([plain]) if i.check in FAMILIES]
    dtypes = {(i.check, i.dtype) for i in items_for([SOFTMAX_CE], devices=["cpu"])
              if i.check in FAMILIES}
    assert dtypes == {(c, d) for c in FAMILIES for d in DTYPES}


def test_a_reference_that_is_not_callable_is_refused():
    with pytest.raises(ValueError, match="reference must be callable"):
        Case("bad", torch.sin, [Input((3,))], reference=3)
