"""The analytic check and triangulation: which of the three sources is wrong."""

import pandas as pd
import pytest
import torch
from checking import on_example, only

from harness import Case, Input, check_gradients
from harness.checks import Settings
from harness.cli import main
from harness.inputs import draw_example

import planted


def analytic(fn, *inputs, grad):
    return only("analytic", fn, *inputs, grad=grad)


def x64(*shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (4 * torch.rand(shape, generator=gen, dtype=torch.float64) - 2).requires_grad_()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_right_formula_passes(dtype):
    x = x64(7).detach().to(dtype).requires_grad_()
    assert analytic(planted.square, x, grad=lambda x, v: 2 * x * v).status == "pass"


def test_wrong_formula_is_blamed_on_the_formula():
    record = analytic(planted.square, x64(7), grad=lambda x, v: 3 * x * v)
    assert record.status == "fail"
    assert "the analytic formula disagrees with autograd and finite differences" in record.pattern
    assert "check the case's grad" in record.pattern


def test_wrong_backward_is_blamed_on_the_backward():
    record = analytic(planted.square_sign_flip, x64(7), grad=lambda x, v: 2 * x * v)
    assert "autograd disagrees with the analytic formula and finite differences" in record.pattern
    assert "sign flipped" in record.pattern


def test_fd_check_triangulates_too():
    (record,) = check_gradients(planted.sin_missing_half, x64(6),
                                grad=lambda x, v: torch.cos(x) * v, checks=("fd",)).records
    assert "the backward (custom autograd Function or kernel) is wrong" in record.pattern


def test_k_times_reference_says_accumulated():
    record = analytic(planted.square_three_times, x64(5), grad=lambda x, v: 2 * x * v)
    assert "exactly 3 times" in record.pattern


def test_swapped_gradients_in_analytic_check():
    record = analytic(planted.MulExpSwapped.apply, x64(4, seed=1), x64(4, seed=2),
                      grad=lambda x, y, v: (v * torch.exp(y), v * x * torch.exp(y)))
    assert "swapped" in record.pattern


def test_no_grad_is_a_skip():
    case = Case(name="t/no-grad", fn=torch.sin, inputs=[Input((3,))])
    ex = draw_example(case, torch.float64, "cpu", 0)
    record = on_example("analytic", ex)
    assert record.status == "skip"


def test_analytic_of_wrong_count_is_an_error_row():
    (record,) = check_gradients(torch.mul, x64(3), x64(3, seed=1),
                                grad=lambda x, y, v: y * v, checks=("analytic",)).records
    assert record.status == "error"
    assert "grad returned 1 tensor(s) but 2 input(s) are checked" in record.message


def test_analytic_of_wrong_shape_is_an_error_row():
    (record,) = check_gradients(torch.sin, x64(3), grad=lambda x, v: v.sum(),
                                checks=("analytic",)).records
    assert record.status == "error"
    assert "has shape ()" in record.message and "(3,)" in record.message


def _items(case):
    from harness.plan import items_for
    from harness.runner import run_item

    return {item.check: run_item(item, Settings())
            for item in items_for([case], ["analytic", "fd"], [torch.float64], ["cpu"])}


def test_expected_failure_is_an_xfail_when_it_fails_with_the_phrase():
    wrong = Case(name="t/teach", fn=torch.sin, inputs=[Input((3,))],
                 grad=lambda x, v: 2 * torch.cos(x) * v,
                 expected_failures={"analytic": "exactly 2 times"})
    records = _items(wrong)
    assert records["analytic"].status == "xfail"
    assert records["analytic"].message.startswith("fails as the case expects")
    assert records["fd"].status == "pass"


def test_expected_failure_that_does_not_happen_is_an_xpass_that_fails_the_run(tmp_path,
                                                                              capsys):
    right = Case(name="t/teach", fn=torch.sin, inputs=[Input((3,))],
                 grad=lambda x, v: torch.cos(x) * v,
                 expected_failures={"analytic": "exactly 2 times"})
    record = _items(right)["analytic"]
    assert record.status == "xpass" and "was expected to fail" in record.message
    (tmp_path / "teach.py").write_text('''
import torch
from harness import Case, Input
right = Case(name="t/teach", fn=torch.sin, inputs=[Input((3,))],
             grad=lambda x, v: torch.cos(x) * v, expected_failures={"analytic": "exactly 2"})
wrong = Case(name="t/teach-wrong", fn=torch.sin, inputs=[Input((3,))],
             grad=lambda x, v: 2 * torch.cos(x) * v, expected_failures={"analytic": "exactly 2"})
''')
    code = main(["check", "--load", str(tmp_path / "teach.py"), "--cases", "t/*", "--check",
                 "analytic", "--report-dir", str(tmp_path), "--no-isolate"])
    out = capsys.readouterr().out
    assert code == 1
    assert "4 rows, 2 cases: 0 pass, 0 fail, 0 error, 0 skip, 2 xfail, 2 xpass" in out
    assert "XPASS t/teach analytic" in out
    frame = pd.read_csv(tmp_path / "correctness.csv")
    assert sorted(frame["status"]) == ["xfail", "xfail", "xpass", "xpass"]


def test_expected_failure_with_another_diagnosis_stays_a_failure():
    other = Case(name="t/teach", fn=torch.sin, inputs=[Input((3,))],
                 grad=lambda x, v: -torch.cos(x) * v,
                 expected_failures={"analytic": "exactly 2 times"})
    record = _items(other)["analytic"]
    assert record.status == "fail" and "sign flipped" in record.message
