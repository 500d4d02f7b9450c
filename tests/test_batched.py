"""Batched gradients: vmap of the backward, of forward mode, and of fn, against the loop."""

import pytest
import torch
from checking import run_check

import planted

X = torch.linspace(-1.5, 2.0, 12).reshape(3, 4)
CORRECT = [
    (torch.tanh, (X,)), (torch.matmul, (X, X.T)), (lambda x: torch.softmax(x, -1), (X,)),
    (lambda x: (torch.sin(x), x.sum()), (X,)), (planted.SquareFunc.apply, (X,)),
]
CORRECT_IDS = ["tanh", "matmul", "softmax", "two-outputs", "custom-func"]


@pytest.mark.parametrize("check", ["batched-grad", "batched-forward-ad", "vmap"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("fn, inputs", CORRECT, ids=CORRECT_IDS)
def test_correct_code_passes_batched(check, fn, inputs, dtype):
    record = run_check(check, fn, *[x.clone() for x in inputs], dtype=dtype)
    assert record.status == "pass", record.message


@pytest.mark.parametrize("check, path", [
    ("batched-grad", "torch.func.vmap over autograd.grad differs from the loop of single "
                     "backwards for input 0"),
    ("batched-forward-ad", "torch.func.vmap over torch.func.jvp differs from the loop of single "
                           "JVPs for the tangent of output 0 along input 0"),
])
def test_a_wrong_vmap_rule_inside_backward_or_jvp_fails(check, path):
    record = run_check(check, planted.SquareFuncBatchedWrong.apply, X.clone())
    assert record.status == "fail"
    assert path in record.message
    assert "the first index is the batch element" in record.message
    assert "A vmap rule" in record.message


def test_a_wrong_vmap_staticmethod_fails_vmap_over_inputs():
    record = run_check("vmap", planted.SquareFuncWrongVmap.apply, X.clone())
    assert record.status == "fail"
    assert "torch.func.vmap over fn and torch.func.vjp differs from the loop of single calls " \
           "for output 0" in record.message


@pytest.mark.parametrize("fn, phrase", [
    (planted.SquareFuncNoVmapRule.apply, "set generate_vmap_rule = True or write a vmap "
                                         "staticmethod"),
    (planted.square, "old style (forward(ctx, ...))"),
], ids=["no-rule", "old-style"])
def test_a_function_that_cannot_be_vmapped_is_a_skip_saying_what_to_add(fn, phrase):
    record = run_check("vmap", fn, X.clone())
    assert record.status == "skip"
    assert phrase in record.message


def test_a_backward_reading_item_is_a_skip_for_batched_grad():
    record = run_check("batched-grad", planted.square_reads_item, X.clone())
    assert record.status == "skip"
    assert "the backward does not run under vmap" in record.message
    assert ".item()" in record.message


def test_a_function_without_jvp_is_a_skip_for_batched_forward_ad():
    record = run_check("batched-forward-ad", planted.square, X.clone())
    assert record.status == "skip" and "add a jvp staticmethod" in record.message


def test_batched_grad_of_an_old_style_function_passes():
    record = run_check("batched-grad", planted.square, X.clone())
    assert record.status == "pass", record.message
