"""The undefined-grad check: outputs without a gradient count as zeros, never crash, and
inputs that get no gradient are named."""

import pytest
import torch
from checking import run_check

import planted


def run(fn, *inputs, dtype=torch.float64):
    return run_check("undefined-grad", fn, *inputs, dtype=dtype)


X = torch.linspace(-1.5, 2.0, 7)


A = torch.tensor([[1.0, 0.2, -0.4], [0.3, 2.0, 0.1], [-0.5, 0.6, 3.0]])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("fn, x", [
    (planted.two_outputs, X), (lambda x: (torch.sin(x), torch.cos(x)), X),
    (torch.tanh, X), (lambda a: torch.linalg.eigh(a @ a.mT), A),  # eigenvalues and vectors
], ids=["two-outputs", "sincos", "tanh", "eigh"])
def test_correct_functions_pass(fn, x, dtype):
    record = run(fn, x.clone(), dtype=dtype)
    assert record.status == "pass", record.message


def test_backward_dropping_a_gradient_when_another_is_undefined_fails():
    record = run(planted.two_outputs_ignores_second, X.clone())
    assert record.status == "fail"
    assert "from output 1 alone differs from the same with the other outputs' gradients " \
        "given as zeros" in record.message


def test_backward_crashing_on_an_undefined_gradient_fails():
    record = run(planted.two_outputs_crash_on_none, X.clone())
    assert record.status == "fail"
    assert "backward raises when only output 0 has a gradient (the others undefined)" \
        in record.message
    assert "TypeError" in record.message and "set_materialize_grads" in record.message


def test_an_input_without_gradient_is_named():
    record = run(lambda x, y: 2 * x + 0 * y.detach(), X.clone(), X.clone())
    assert record.status == "pass"
    assert "y gets no gradient from any output (None)" in record.message
