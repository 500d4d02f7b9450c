"""The finite-difference check: right gradients pass, planted bugs fail with the right story."""

import pytest
import torch

from harness import check_gradients

import planted

DTYPES = [pytest.param(torch.float64, id="float64"), pytest.param(torch.float32, id="float32")]


def fd(fn, *inputs, **kwargs):
    report = check_gradients(fn, *inputs, checks=("fd",), **kwargs)
    (record,) = report.records
    return record


def leaf(*shape, low=-2.0, high=2.0, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)
    return x.to(dtype).requires_grad_()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", [planted.square, torch.sin, torch.tanh, torch.exp,
                                lambda x: torch.softmax(x, -1), lambda x: (x**3).sum()],
                         ids=["square", "sin", "tanh", "exp", "softmax", "cube-sum"])
def test_correct_gradients_pass(fn, dtype):
    record = fd(fn, leaf(5, 7, dtype=dtype))
    assert record.status == "pass", record.message


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_magnitudes_pass(dtype):
    x = leaf(30, low=1e5, high=1e7, dtype=dtype)
    assert fd(lambda x: (x**2).sum() / 1e9, x).status == "pass"
    assert fd(torch.linalg.vector_norm, x).status == "pass"


@pytest.mark.parametrize("dtype", DTYPES)
def test_steep_functions_near_the_domain_edge_pass(dtype):
    x = leaf(20, low=1e-4, high=1e-2, dtype=dtype)
    for fn in (torch.log, torch.sqrt, torch.reciprocal):
        record = fd(fn, x)
        assert record.status == "pass", record.message


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_input_passes_along_random_directions(dtype):
    record = fd(torch.sin, leaf(100, 100, dtype=dtype))
    assert record.status == "pass", record.message


def test_sign_flip():
    record = fd(planted.square_sign_flip, leaf(6))
    assert record.status == "fail"
    assert "sign flipped" in record.pattern
    assert "reproduce:" in record.message


def test_missing_factor():
    record = fd(planted.sin_missing_half, leaf(6))
    assert "constant factor 0.5" in record.pattern


def test_k_times_says_accumulated():
    record = fd(planted.square_three_times, leaf(6))
    assert "exactly 3 times" in record.pattern
    assert "zero .grad" in record.pattern


def test_wrong_only_for_negative_inputs():
    record = fd(planted.square_wrong_negative, leaf(20))
    assert record.status == "fail"
    assert "where the input is negative" in record.pattern


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_wrong_element_in_a_large_tensor_is_located(dtype):
    record = fd(planted.sin_one_wrong, leaf(100, 100, dtype=dtype))
    assert record.status == "fail"
    assert record.index == "12,34"
    assert "one element wrong" in record.pattern
    assert "input 0[12, 34]" in record.message
    assert record.actual == pytest.approx(1.5 * record.expected, rel=1e-3)


def test_transposed_matmul_gradient():
    a, b = leaf(5, 5, seed=1), leaf(5, 5, seed=2)
    record = fd(planted.MatmulTransposed.apply, a, b)
    assert record.status == "fail"
    assert record.input == "input 0"
    assert "transposed" in record.pattern


def test_swapped_gradients():
    x, y = leaf(4, seed=1), leaf(4, seed=2)
    record = fd(planted.MulExpSwapped.apply, x, y)
    assert "gradients of input 0 and input 1 are swapped" in record.pattern


@pytest.mark.parametrize("shape", [(8,), (300, 40)], ids=["elementwise", "directional"])
def test_a_0_01_percent_error_fails_in_float64(shape):
    record = fd(planted.square_tiny_error, leaf(*shape))
    assert record.status == "fail"
    if len(shape) == 1:
        assert "constant factor 1.0001" in record.pattern


def test_backward_that_ignores_its_incoming_gradient():
    record = fd(planted.square_ignores_grad, leaf(5))
    assert record.status == "fail"
    assert "ignores its incoming gradient" in record.pattern


def test_scalar_output_cotangent_is_random_too():
    """Even for a scalar output, a backward that drops grad_output is caught."""
    record = fd(lambda x: planted.square_ignores_grad(x).sum(), leaf(5))
    assert record.status == "fail"


def test_float32_run_of_a_bug_fails_too():
    record = fd(planted.sin_missing_half, leaf(6, dtype=torch.float32))
    assert record.status == "fail" and record.dtype == "float32"


def test_gradcheck_misses_what_the_harness_catches():
    """gradcheck fast mode passes a 0.01% error; the harness does not."""
    x = leaf(300, 40)
    assert torch.autograd.gradcheck(planted.square_tiny_error, (x,), fast_mode=True)
    assert fd(planted.square_tiny_error, x).status == "fail"


class SinCosWrongSecondOutput(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sin(x), torch.cos(x)

    @staticmethod
    def backward(ctx, g_sin, g_cos):
        (x,) = ctx.saved_tensors
        return torch.cos(x) * g_sin + torch.sin(x) * g_cos  # sign of d cos wrong


def test_tuple_outputs_get_a_cotangent_each():
    record = fd(SinCosWrongSecondOutput.apply, leaf(8))
    assert record.status == "fail"
    assert fd(lambda x: (torch.sin(x), torch.cos(x)), leaf(8)).status == "pass"


def test_output_that_does_not_depend_on_an_input_reports_none_gradient():
    record = fd(lambda x, y: (x * 1.0).detach() * 0 + torch.sin(y) * 0 + x.detach() ** 2,
                leaf(3), leaf(3, seed=1))
    assert record.status == "fail"
    assert "no gradient (None)" in record.pattern
