"""The OpInfo plugin: opt-in loading, samples the way OpInfo means them, torch's own marks,
a clear error when the private database is missing, and a wrong operator caught."""

import copy
import sys
from unittest import mock

import pytest
import torch

from harness import OptInCases, registry
from harness.checks import Settings
from harness.plan import items_for
from harness.runner import run_item
from harness.source import from_plugin

import planted

pytest.importorskip("expecttest")
opinfo = pytest.importorskip("gradharness_cases.opinfo")

QUICK = ("sin", "cat", "linalg.cholesky", "max", "fft.ifft", "native_layer_norm", "addmm",
         "nn.functional.conv2d", "linalg.multi_dot", "corrcoef")


@pytest.fixture(scope="module")
def ops():
    return {(op.name, op.variant_test_name): op for op in opinfo.gradient_ops()}


def _run(cases):
    return [run_item(item, Settings()) for item in items_for(cases, devices=["cpu"])]


def test_a_default_run_does_not_build_the_opinfo_cases():
    reg = registry.load()
    assert not any(c.name.startswith("opinfo/") for c in reg.cases)
    assert [name for name, _ in reg.opt_in] == ["opinfo"]


def test_selection_by_name_or_tag_builds_them():
    source = opinfo.OPINFO
    assert source.wanted(["opinfo/*"]) and source.wanted(["opinfo/sin/0"])
    assert source.wanted([], ["opinfo"])
    assert not source.wanted(["*"]) and not source.wanted(["block/*"])


def test_quick_subset_passes(ops):
    chosen = [op for (name, _), op in ops.items() if name in QUICK]
    cases = opinfo.opinfo_cases(ops=chosen)
    assert {c.name.split("/")[1] for c in cases} >= {"sin", "cat", "max.reduction_with_dim"}
    records = _run(cases)
    bad = [f"{r.case} {r.check}: {r.message[:200]}" for r in records if r.status != "pass"]
    assert not bad, "\n".join(bad)
    assert {r.check for r in records} == {"fd", "undefined-grad", "second-order", "reentrancy",
                                          "forward-ad", "batched-grad", "batched-forward-ad"}


def test_tensor_lists_and_wrappers_are_recomposed(ops):
    (cat,) = [c for c in opinfo.opinfo_cases(ops=[ops[("cat", "")]], samples_per_op=1)]
    assert cat.input_names[0] == "input[0]"  # a list input, flattened
    (chol,) = opinfo.opinfo_cases(ops=[ops[("linalg.cholesky", "")]], samples_per_op=1)
    x = chol.inputs(torch.Generator())[0]
    (out,) = chol.fn(x)  # the OpInfo's gradcheck_wrapper makes the input Hermitian first
    torch.testing.assert_close(out, torch.linalg.cholesky(x + x.mH, upper=True))


def test_outputs_without_gradient_are_left_out(ops):
    (case,) = opinfo.opinfo_cases(ops=[ops[("native_layer_norm", "")]], samples_per_op=1)
    outs = case.fn(*case.inputs(torch.Generator()))
    assert len(outs) == 1  # mean and rstd carry no gradient, as in gradcheck


def test_declared_nondeterminism_is_measured(ops):
    cases = opinfo.opinfo_cases(ops=[ops[("addmm", "")]], samples_per_op=1)
    assert cases[0].nondeterministic_tol > 0 and "reentrancy" in cases[0].checks
    assert "nondeterministic" in cases[0].tags


def test_torch_marks_are_followed(ops):
    marks = opinfo.torch_marks(ops[("bfloat16", "")])
    assert marks["fd"] == marks["second-order"] == "expected failure"
    assert opinfo.opinfo_cases(ops=[ops[("bfloat16", "")]]) == []
    (group_norm, *_) = opinfo.opinfo_cases(ops=[ops[("native_group_norm", "")]])
    # test_fn_grad (with its undefined-gradient check) is an expected failure
    assert "fd" not in group_norm.checks and "undefined-grad" not in group_norm.checks
    (layer_norm, *_) = opinfo.opinfo_cases(ops=[ops[("native_layer_norm", "")]])
    assert "second-order" not in layer_norm.checks  # torch expects its gradgrad to fail
    assert {"fd", "undefined-grad"} <= set(layer_norm.checks)
    assert "marks second-order expected failure" in layer_norm.description


def test_a_wrong_operator_is_caught(ops):
    wrong = copy.copy(ops[("sin", "")])
    wrong.op = lambda x, *args, **kwargs: planted.sin_slightly_large(x)
    records = [r for r in _run(opinfo.opinfo_cases(ops=[wrong], samples_per_op=2))
               if r.check == "fd"]
    assert records and all(r.status == "fail" for r in records)
    assert "constant factor 1.001" in records[0].message


def test_missing_database_is_one_error_row(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.testing._internal.common_methods_invocations",
                        None)
    cases, errors = registry._take(from_plugin("opinfo", "x:OPINFO"), OptInCases("opinfo",
                                                               opinfo.opinfo_cases).load)
    assert cases == [] and len(errors) == 1
    assert "OpInfo database could not be imported" in errors[0].message
    assert "pip install expecttest" in errors[0].message


def test_partial_views_keep_their_storage(ops):
    cases = opinfo.opinfo_cases(ops=[ops[("as_strided", "partial_views")]])
    assert len(cases) == 3
    records = _run(cases)
    assert all(r.status == "pass" for r in records), [r.message for r in records]


@pytest.mark.parametrize("name, variant", [("normal", ""), ("normal", "number_mean"),
                                           ("nn.functional.rrelu", "")])
def test_random_operators_draw_what_torch_s_own_seeding_draws(ops, name, variant):
    """Where no accelerator is available, OpInfo's reseeding of random operators is replaced
    by one that seeds the CPU generator alone: the same values, every call."""
    from torch.testing import _utils
    from torch.testing._internal import common_methods_invocations as cmi

    op = ops[(name, variant)]
    case = opinfo.opinfo_cases(ops=[op], follow_torch_marks=False)[0]
    tensors = case.inputs(torch.Generator())
    ours = [case.fn(*tensors) for _ in range(2)]
    installed = cmi.wrapper_set_seed
    cmi.wrapper_set_seed = _utils.wrapper_set_seed
    try:
        with mock.patch.object(opinfo, "_cpu_only", lambda: False):
            theirs = opinfo.opinfo_cases(ops=[op], follow_torch_marks=False)[0].fn(*tensors)
    finally:
        cmi.wrapper_set_seed = installed
    if opinfo._cpu_only():
        assert installed is opinfo._cpu_seeded
    for a, b, c in zip(*ours, theirs):
        assert torch.equal(a, c) and torch.equal(b, c), name
    assert any(bool((t != 0).any()) for t in theirs)  # random values, not all zero


@pytest.mark.parametrize("name", ["sin", "addmm", "nn.functional.conv2d", "cat"])
def test_samples_are_the_values_torch_s_own_sample_inputs_gives(ops, name):
    """op_samples reads the generator beneath op.sample_inputs and reseeds the CPU generators
    itself: the same values as torch's tracked, reseeding iterator."""
    op = ops[(name, "")]
    ours = opinfo.op_samples(op)
    theirs = list(op.sample_inputs("cpu", torch.float64, requires_grad=True))[:len(ours)]
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs):
        left, right = [a.input, *a.args], [b.input, *b.args]
        flat = [(x, y) for x, y in zip(left, right) for x, y in
                (zip(x, y) if isinstance(x, (list, tuple)) else [(x, y)])]
        assert any(isinstance(x, torch.Tensor) for x, _ in flat)
        for x, y in flat:
            if isinstance(x, torch.Tensor):
                assert torch.equal(x, y), name
            else:
                assert x == y, name
