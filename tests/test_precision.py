"""Low precision: bfloat16 (and on CUDA float16) gradients against float64."""

import pytest
import torch

from gradharness_cases import all_cases
from harness import check_gradients
from harness.checks.precision import check_low_precision
from harness.inputs import draw_example

import planted

X = torch.linspace(-2.0, 2.0, 1000, dtype=torch.float64)


def run(fn, *inputs):
    records = check_gradients(fn, *[x.clone().requires_grad_() for x in inputs],
                              checks=("low-precision",)).records
    assert {r.dtype for r in records if r.device == "cpu"} == {"bfloat16"}
    return records[0]


@pytest.mark.parametrize("fn, inputs", [
    (torch.tanh, (X,)), (torch.matmul, (X.reshape(40, 25), X.reshape(25, 40))),
    (lambda x: torch.softmax(3 * x.reshape(-1, 10), -1), (X,)),
    (lambda x: torch.nn.functional.layer_norm(x.reshape(-1, 50), (50,)), (X,)),
    (lambda x: (x.reshape(-1, 10) ** 2).mean(), (X,)),
    (planted.tanh_low_precision_1pct, (X[:12],)),  # too few elements to see 1%: no false alarm
], ids=["tanh", "matmul", "softmax", "layer_norm", "mean-square", "twelve-elements"])
def test_correct_code_passes_in_bfloat16(fn, inputs):
    record = run(fn, *inputs)
    assert record.status == "pass", record.message


def test_a_one_percent_error_in_half_precision_fails_as_systematic():
    record = run(planted.tanh_low_precision_1pct, X)
    assert record.status == "fail"
    assert "the bfloat16 gradient of input 0 is" in record.message
    assert "larger than the float64 one on average" in record.message
    assert "a systematic error, not rounding" in record.message
    assert run(planted.tanh_low_precision_1pct, X[:12]).status == "pass"


def test_a_wrong_element_in_bfloat16_is_named():
    record = run(planted.sin_one_wrong_in_bfloat16, X[468:532])  # cos(x) near 1
    assert record.status == "fail"
    assert "worst at input 0[7]" in record.message


def test_an_op_without_a_bfloat16_kernel_is_a_skip():
    def cholesky_loss(a):
        return torch.linalg.cholesky(a @ a.mT + torch.eye(4, dtype=a.dtype)).sum()

    record = run(cholesky_loss, torch.randn(4, 4, dtype=torch.float64))
    assert record.status == "skip"
    assert "does not run in bfloat16 on cpu" in record.message


@pytest.mark.parametrize("seed", [59, 84])
def test_a_saturated_sigmoid_is_not_a_false_alarm(seed):
    # sigmoid's backward reads its saved output: at x = 5.94, bfloat16 keeps 1 - y as one ulp
    # of 1 (0.0039 for 0.0026), so the correct kernel's gradient is 50% off; no jitter of x
    # by a few ulps moves that rounding (block/sigmoid cried wolf on it at these seeds)
    (case,) = [c for c in all_cases() if c.name == "block/sigmoid"]
    ex = draw_example(case, torch.bfloat16, "cpu", seed)
    assert float(ex.leaves()[0].detach().double().abs().max()) > 5.5
    finding = check_low_precision(ex, None)
    assert not finding.problems, finding.problems
    wrong = run(planted.sin_one_wrong_in_bfloat16, X[468:532])
    assert wrong.status == "fail"  # the saved-rounding term does not hide a wrong element


def test_fn_that_cannot_run_in_bfloat16_is_a_skip_saying_why():
    data = torch.randn(5, 4)  # float32, held by fn: a bfloat16 input cannot meet it

    def loss(w):
        return (data @ w).square().sum()

    w = torch.randn(4, 3, requires_grad=True)
    (record,) = check_gradients(loss, w, checks=["low-precision"]).records
    assert record.status == "skip", record.message
    assert record.message.startswith("fn or its backward does not run in bfloat16 on cpu "
                                     "(RuntimeError: "), record.message
