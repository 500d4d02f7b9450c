"""The layouts check: non-contiguous inputs and cotangents give the contiguous gradients."""

import pytest
import torch
from checking import run_check

from harness.checks.layouts import layouts_for

import planted


def run(fn, *inputs, dtype=torch.float64):
    return run_check("layouts", fn, *inputs, dtype=dtype)


M = torch.linspace(-1.5, 2.0, 12).reshape(3, 4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("fn, inputs", [
    (planted.square, (M,)), (torch.matmul, (M, M.T)), (lambda x: torch.softmax(x, -1), (M,)),
    (lambda x: torch.nn.functional.conv2d(x, torch.ones(2, 3, 2, 2, dtype=x.dtype)),
     (torch.linspace(-1, 1, 2 * 3 * 4 * 5).reshape(2, 3, 4, 5),)),
], ids=["square", "matmul", "softmax", "conv2d"])
def test_correct_functions_pass(fn, inputs, dtype):
    record = run(fn, *[x.clone() for x in inputs], dtype=dtype)
    assert record.status == "pass", record.message
    assert "layouts tried: " in record.message


def test_layouts_are_non_contiguous_with_the_same_values():
    x = torch.randn(2, 3, 4, 5)
    made = layouts_for(x)
    assert set(made) == {"strided slice", "transposed", "channels_last"}
    assert all(not y.is_contiguous() and torch.equal(y, x) for y in made.values())
    assert layouts_for(torch.tensor(1.0)) == {}


def test_view_on_a_non_contiguous_cotangent_is_named():
    record = run(planted.square_views_cotangent, M.clone())
    assert record.status == "fail"
    assert "backward calls .view on a non-contiguous tensor" in record.message
    assert "use .reshape or .contiguous() first" in record.message


def test_ignored_strides_are_caught():
    record = run(planted.square_ignores_strides, M.clone())
    assert record.status == "fail"
    assert "differs from the contiguous run" in record.message
    assert "the code assumes contiguous memory" in record.message


def test_a_forward_that_needs_contiguous_input_is_noted_not_failed():
    record = run(lambda x: x.view(-1) * 2, M.clone())
    assert record.status == "pass"
    assert "fn itself does not take transposed inputs" in record.message
