"""Sparse inputs (gradcheck's masked): gradients on the specified values."""

import pytest
import torch

from harness import Case, Input, check_gradients
from harness.plan import items_for

import planted

S = torch.sparse_coo_tensor(torch.tensor([[0, 1, 2, 3, 3], [2, 0, 1, 3, 0]]),
                            torch.tensor([1.0, -2.0, 3.0, 0.5, -1.25]), (4, 4),
                            check_invariants=True).coalesce()
D = torch.linspace(-1.0, 2.0, 12).reshape(4, 3)


def run(fn, dtype=torch.float64):
    (record,) = check_gradients(fn, S.to(dtype).requires_grad_(),
                                D.to(dtype).requires_grad_()).records
    return record


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("fn", [torch.sparse.mm, planted.SparseDenseMatmul.apply,
                                lambda s, d: s.to_dense() @ d],
                         ids=["sparse.mm", "custom-function", "to_dense"])
def test_correct_sparse_gradients_pass_and_say_they_are_masked(fn, dtype):
    record = run(fn, dtype)
    assert record.check == "sparse"
    assert record.status == "pass", record.message
    assert "covers only the specified elements (masked semantics" in record.message


def test_a_wrong_gradient_for_the_values_fails_naming_them():
    record = run(planted.SparseDenseMatmulWrongValues.apply)
    assert record.status == "fail"
    assert "checked on their specified values (gradcheck's masked=True)" in record.message
    assert "worst at input 0.values[" in record.message
    assert "off by a constant factor 1.5" in record.message


def test_the_sparse_check_is_opt_in_by_name_or_tag():
    plain = Case(name="plain", fn=torch.sin, inputs=[Input((3,))])
    tagged = Case(name="tagged", fn=torch.sin, inputs=[Input((3,))], tags=("sparse",))
    assert "sparse" not in {i.check for i in items_for([plain])}
    assert "sparse" in {i.check for i in items_for([tagged])}
