"""torch's own corpora of custom autograd Functions and custom ops (cases/torch_functions.py):
built for the whole suite and when named, not when a run selects other cases; every declared
failure fails with its diagnosis (the deliberately wrong-shaped gradient named by its shape),
and the rest pass. The two diagnoses they brought (a gradient autograd summed down, values at
permuted positions) are held on small Functions of their own."""

import pytest
import torch
from checking import on_case

from harness import Case, Input, registry
from harness.checks import Settings
from harness.plan import items_for
from harness.processes import whole_suite
from harness.runner import run_item

corpora = pytest.importorskip("gradharness_cases.torch_functions")


@pytest.fixture(scope="module")
def cases():
    return {case.name.split("/")[1]: case for case in corpora.torch_function_cases()}


def test_the_whole_suite_builds_them_and_a_narrower_run_does_not():
    source = corpora.TORCH_FUNCTIONS
    assert source.wanted() and source.wanted(["torch-functions/*"])
    assert source.wanted([], ["torch-functions"])
    assert not source.wanted(["kernel/*"]) and not source.wanted([], ["kernel"])
    reg = registry.load(patterns=["kernel/*"])
    assert "torch-functions" in [name for name, _ in reg.opt_in]
    assert whole_suite(["check", "--seed", "1"]) and whole_suite(["search"])
    assert not whole_suite(["check", "--cases", "x/*"]) and not whole_suite(["check", "--tag=k"])


def test_both_corpora_are_there_tagged(cases):
    assert {"NumpyCubeAutogradFunction", "ZeroGradientsGenVmapAutogradFunction",
            "NumpyCubeCustomOp", "NumpySplitCopyWithIntCustomOp"} <= set(cases)
    assert all(case.tags[0] == "torch-functions" for case in cases.values())
    assert set(corpora.EXPECTED) <= set(cases)


def _records(case):
    return [run_item(item, Settings()) for item in items_for([case], devices=["cpu"])]


@pytest.mark.parametrize("op", sorted(corpora.EXPECTED))
def test_each_declared_failure_fails_with_its_diagnosis(cases, op):
    records = _records(cases[op])
    failing = {r.check for r in records if r.status == "xfail"}
    assert failing == set(cases[op].expected_failures), [(r.check, r.status) for r in records]
    assert all(r.status in ("pass", "xfail") for r in records)
    assert "expected to fail: " in cases[op].description


def test_the_deliberately_wrong_shaped_gradient_is_named_by_its_shape(cases):
    (fd,) = [r for r in _records(cases["ZeroGradientsGenVmapAutogradFunction"])
             if r.check == "fd"]
    assert ("ZeroGradientsGenVmap.backward returns a gradient of shape (3, 4, 4) for input "
            "(shape (4,)); autograd sums it down to (4,) without an error") in fd.message


@pytest.mark.parametrize("op", ["NumpyCubeAutogradFunction", "NumpyTakeAutogradFunction",
                                "NumpySplitCopyWithIntCustomOp", "SortGenVmapAutogradFunction"])
def test_undeclared_ones_pass(cases, op):
    records = _records(cases[op])
    assert records and all(r.status == "pass" for r in records), [
        (r.check, r.message[:200]) for r in records if r.status != "pass"]


def test_a_gradcheck_wrapper_that_does_not_take_the_operator_is_not_used(cases):
    assert "its gradcheck_wrapper does not take (operator, *args)" in cases[
        "SortGenVmapAutogradFunction"].description


class _Broadcast(torch.autograd.Function):
    """x * 2 with a backward that returns the gradient stacked three times (autograd sums
    the stack back: 3x)."""

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        return (grad * 2).expand(3, *grad.shape).clone()


class _Gather(torch.autograd.Function):
    """x[perm] with a backward that gathers by perm where it should by its inverse (PERM
    swaps its last two pairs, which are their own inverse: 4 of 8 elements move)."""

    @staticmethod
    def forward(ctx, x, perm):
        ctx.save_for_backward(perm)
        return x[perm]

    @staticmethod
    def backward(ctx, grad):
        (perm,) = ctx.saved_tensors
        return grad[perm], None


PERM = torch.tensor([2, 0, 3, 1, 5, 4, 7, 6])


def test_a_backward_returning_a_broadcast_gradient_is_named():
    case = Case(name="t/broadcast", fn=_Broadcast.apply, inputs=[Input((5,), name="x")])
    record = on_case("fd", case)
    assert record.status == "fail"
    assert ("_Broadcast.backward returns a gradient of shape (3, 5) for x (shape (5,)); "
            "autograd sums it down to (5,)") in record.message


def test_a_gradient_at_permuted_positions_is_named_an_index_mix_up():
    case = Case(name="t/gather", fn=lambda x: _Gather.apply(x, PERM),
                inputs=[Input((8,), name="x")])
    record = on_case("fd", case)
    assert record.status == "fail"
    assert record.pattern.startswith("the right values at the wrong positions (4 of 8 elements "
                                     "moved"), record.pattern
    right = Case(name="t/gather-right", fn=lambda x: x[PERM], inputs=[Input((8,), name="x")])
    assert on_case("fd", right).status == "pass"
