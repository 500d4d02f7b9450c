"""The opcheck families: a torch.library custom op's registration (schema, fake kernel,
autograd registration, AOT dispatch), each planted bug with its own diagnosis, and custom ops
named by their qualified name."""

import pytest
import torch
from checking import on_case, only
from planted_ops import (
    no_backward,
    off_by_one_percent,
    right_sin,
    undeclared_mutation,
    unsaved_input,
    wrong_fake_shape,
    wrong_fake_strides,
)

from gradharness_cases.custom_ops import CUSTOM_OP_CASES, scaled_sin
from harness import Case, Input, check_gradients
from harness.checks import opcheck

OPCHECKS = [spec.name for spec in opcheck.OPCHECKS]
(SCALED_SIN,) = CUSTOM_OP_CASES


def _x():
    return torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0),
                       requires_grad=True)


@pytest.mark.parametrize("check", OPCHECKS)
def test_the_correct_op_passes_each_registration_test(check):
    record = on_case(check, SCALED_SIN)
    assert record.status == "pass", record.message
    assert "harness_cases::scaled_sin at the arguments fn passes it ((" in record.message


def test_the_correct_op_passes_every_family_and_is_named_by_its_qualified_name():
    report = check_gradients(right_sin, _x())
    assert report.ok, report
    assert {r.case for r in report.records} == {"harness_tests::right_sin"}
    assert {r.check for r in report.records if r.status == "pass"} >= set(OPCHECKS)
    forward = [r for r in report.records if r.check == "forward-ad"]
    assert forward[0].status == "skip"
    assert "harness_tests::right_sin is a torch.library custom op" in forward[0].message


def test_a_fake_kernel_with_the_wrong_shape_fails_naming_both_shapes():
    assert only("fd", wrong_fake_shape, _x()).status == "pass"  # the gradient is right
    record = only("opcheck-fake", wrong_fake_shape, _x())
    assert record.status == "fail"
    assert ("the fake kernel returns shape (4,), the real kernel (4, 3): fix register_fake"
            in record.message), record.message
    assert record.case == "harness_tests::wrong_fake_shape"


def test_an_undeclared_mutation_fails_the_schema_test_naming_the_argument():
    record = only("opcheck-schema", undeclared_mutation, _x())
    assert record.status == "fail"
    assert ("harness_tests::undeclared_mutation writes to its input `x` in place, but its "
            "schema says it mutates nothing: declare it (custom_op(..., "
            "mutates_args=(\"x\",)))") in record.message, record.message


def test_a_backward_reading_what_setup_context_did_not_save_fails_under_aot_dispatch():
    assert only("fd", unsaved_input, _x()).status == "pass"  # right in eager
    record = only("opcheck-aot-dispatch", unsaved_input, _x())
    assert record.status == "fail"
    assert "the backward used a real tensor it did not get from ctx (in aten.cos" \
        in record.message, record.message
    assert "save what it needs there" in record.message


def test_a_registered_backward_one_percent_off_fails_fd_under_its_name():
    record = only("fd", off_by_one_percent, _x())
    assert record.status == "fail"
    assert record.case == "harness_tests::off_by_one_percent"
    assert "off by a constant factor 1.01" in record.pattern
    assert "harness_tests::off_by_one_percent float64 cpu" in record.message


def test_a_plain_function_gets_a_skip_that_says_why():
    record = only("opcheck-schema", torch.sin, _x())
    assert record.status == "skip"
    assert record.message == opcheck.NOT_A_CUSTOM_OP


def test_a_case_names_its_op_by_qualified_name_and_is_checked_at_fns_arguments():
    case = Case(name="t/by-name", fn=lambda x: scaled_sin(x, 3.0) + 1,
                op="harness_cases::scaled_sin", inputs=[Input((2, 5), name="x")])
    record = on_case("opcheck-fake", case)
    assert record.status == "pass", record.message
    assert "((2, 5))" in record.message


def test_a_case_whose_fn_never_calls_its_op_is_an_error():
    case = Case(name="t/never", fn=torch.sin, op=scaled_sin, inputs=[Input((3,), name="x")])
    record = on_case("opcheck-schema", case)
    assert record.status == "error"
    assert "fn never called harness_cases::scaled_sin" in record.message


def test_the_diagnosis_of_a_wrong_fake_dtype():
    exc = RuntimeError("found mismatched tensor metadata: Dtypes torch.float64 and "
                       "torch.float16 are not equal!")
    assert opcheck.diagnosis("test_faketensor", exc, "ns::op") == (
        "the fake kernel returns dtype torch.float16, the real kernel torch.float64: fix "
        "register_fake")


def test_a_fake_kernel_with_the_wrong_strides_fails_naming_both():
    record = only("opcheck-fake", wrong_fake_strides, _x())
    assert record.status == "fail"
    assert ("the fake kernel returns strides (1, 4), the real kernel (3, 1): fix "
            "register_fake") in record.message, record.message


def test_an_op_with_no_backward_fails_aot_dispatch_and_its_errors_say_what_to_register():
    record = only("opcheck-aot-dispatch", no_backward, _x())
    assert record.status == "fail"
    assert "harness_tests::no_backward has no backward at the Autograd key: register one " \
        "with no_backward.register_autograd(" in record.message, record.message
    fd = only("fd", no_backward, _x())
    assert fd.status == "error"
    assert "register one with op.register_autograd(backward, setup_context=...)" in fd.message
    assert "please report it" not in fd.message
