"""Complex inputs: torch's conjugate-Wirtinger convention, checked as real pairs."""

import pytest
import torch
from checking import run_check

from harness import check_gradients

import planted

Z = torch.complex(torch.linspace(-1.5, 2.0, 12), torch.linspace(1.0, -1.0, 12)).reshape(3, 4)
W = torch.complex(torch.linspace(0.5, -2.0, 12), torch.linspace(-0.3, 1.7, 12)).reshape(3, 4)
COMPLEX = [torch.complex128, torch.complex64]


@pytest.mark.parametrize("dtype", COMPLEX, ids=str)
@pytest.mark.parametrize("fn, inputs", [
    (torch.mul, (Z, W)), (torch.exp, (Z,)), (lambda z: (z.abs() ** 2).sum(), (Z,)),
    (lambda z: torch.fft.fft(z, dim=-1), (Z,)), (lambda z: z.conj() * z.sin(), (Z,)),
    (planted.MulComplex.apply, (Z, W)),
], ids=["mul", "exp", "abs-squared", "fft", "non-holomorphic", "custom-function"])
def test_correct_complex_gradients_pass(fn, inputs, dtype):
    record = run_check("complex", fn, *inputs, dtype=dtype)
    assert record.status == "pass", record.message
    assert record.dtype == str(dtype).removeprefix("torch.")


@pytest.mark.parametrize("fn, inputs", [
    (planted.MulConjugateMissing.apply, (Z, W)), (planted.AbsSquaredConjugateMissing.apply, (Z,)),
], ids=["complex-to-complex", "real-loss"])
@pytest.mark.parametrize("dtype", COMPLEX, ids=str)
def test_a_forgotten_conjugate_fails_as_conjugate_missing(fn, inputs, dtype):
    record = run_check("complex", fn, *inputs, dtype=dtype)
    assert record.status == "fail"
    assert record.message.splitlines()[1].startswith("conjugate missing")
    assert record.pattern.startswith("conjugate missing")
    assert "an index's last entry 0 is the real part, 1 the imaginary" in record.message


def test_a_wrong_complex_gradient_that_is_not_a_conjugate_is_not_called_one():
    record = run_check("complex", planted.MulComplexTwiceTooLarge.apply, Z, W,
                       dtype=torch.complex128)
    assert record.status == "fail"
    assert "conjugate missing" not in record.message
    assert "accumulated 2 times?" in record.message  # the pattern: exactly twice the truth


def test_check_gradients_runs_the_complex_check_on_complex_inputs():
    report = check_gradients(planted.MulConjugateMissing.apply, Z.to(torch.complex128),
                             W.to(torch.complex128))
    assert [r.check for r in report.records] == ["complex"]
    assert not report.ok and "conjugate missing" in str(report)


def test_a_wrong_complex_second_derivative_fails_while_first_order_passes():
    record = run_check("complex", planted.ComplexSquareWrongSecond.apply, Z,
                       dtype=torch.complex128)
    assert record.status == "fail"
    assert "double backward vs finite differences of the gradient" in record.message
    assert "conjugate missing" not in record.message
