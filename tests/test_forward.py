"""The forward-ad check: forward mode against reverse mode, finite differences as referee."""

import pytest
import torch
from checking import run_check

import planted


def run(fn, *inputs, dtype=torch.float64):
    return run_check("forward-ad", fn, *inputs, dtype=dtype)


X = torch.linspace(-1.5, 2.0, 12).reshape(3, 4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("fn, inputs", [
    (planted.SquareWithJvp.apply, (X,)), (torch.matmul, (X, X.T)),
    (lambda x: torch.softmax(x, -1), (X,)), (lambda x: (torch.sin(x), x.sum()), (X,)),
], ids=["custom-jvp", "matmul", "softmax", "two-outputs"])
def test_correct_forward_mode_passes(fn, inputs, dtype):
    record = run(fn, *[x.clone() for x in inputs], dtype=dtype)
    assert record.status == "pass", record.message


def test_a_wrong_jvp_fails_and_is_named():
    record = run(planted.SquareWrongJvp.apply, X.clone())
    assert record.status == "fail"
    assert "forward mode <w, J u>" in record.message
    assert "the jvp is wrong (reverse mode agrees with finite differences)" in record.message


def test_a_function_without_jvp_is_a_skip_saying_how_to_add_one():
    record = run(planted.square, X.clone())
    assert record.status == "skip"
    assert "add a jvp staticmethod" in record.message


def test_a_wrong_backward_is_blamed_when_the_jvp_agrees_with_finite_differences():
    record = run(planted.SquareWrongBackwardRightJvp.apply, X.clone())
    assert record.status == "fail"
    assert "the backward is wrong (forward mode agrees with finite differences)" \
        in record.message


@pytest.mark.parametrize("fn, inputs", [
    (torch.tanh, (X,)), (torch.matmul, (X, X.T)), (lambda x: torch.softmax(x, -1), (X,)),
], ids=["tanh", "matmul", "softmax"])
def test_forward_over_reverse_passes_for_correct_code(fn, inputs):
    record = run_check("fwd-over-rev", fn, *[x.clone() for x in inputs])
    assert record.status == "pass", record.message


def test_a_wrong_jvp_inside_the_backward_fails_forward_over_reverse():
    record = run_check("fwd-over-rev", planted.square_backward_wrong_jvp, X.clone())
    assert record.status == "fail"
    assert "forward-over-reverse <r, H u>" in record.message
    assert "a jvp inside the backward is wrong" in record.message
    assert run_check("second-order", planted.square_backward_wrong_jvp,
                     X.clone()).status == "pass"  # reverse-over-reverse is right


def test_a_backward_without_forward_ad_is_a_skip():
    record = run_check("fwd-over-rev", planted.square_backward_no_jvp, X.clone())
    assert record.status == "skip" and "add a jvp staticmethod" in record.message
