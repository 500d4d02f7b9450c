"""The module bisection: a model whose gradient disagrees with finite differences is
bisected to the submodule whose backward is wrong (check_gradients(model, ...), training
cases in `harness check`, pytest)."""

import pytest
import torch
from checking import on_case, only
from planted_modules import (
    Act,
    DetachedSiLU,
    FusedGELU,
    Loop,
    SharedAct,
    SmallCNN,
    blocks,
    wide_mlp,
)

from harness import TrainingCase, assert_gradients, check_gradients
from harness.checks import modules


def _x(rows=5, width=8, seed=1):
    return torch.randn(rows, width, generator=torch.Generator().manual_seed(seed))


def culprits(record) -> list[str]:
    return [line for line in record.message.splitlines()
            if line.startswith("the wrong gradient comes from")]


def sub_checks(record) -> int:
    note = next(n for n in record.message.splitlines() if "bisection:" in n)
    return int(note.split("bisection: ")[1].split()[0])


def test_a_wrong_custom_function_three_levels_deep_is_named_with_its_pattern():
    record = only("module", blocks(4, wrong=(2,)), _x())
    assert record.status == "fail"
    (line,) = culprits(record)
    assert line.startswith("the wrong gradient comes from `2.k.1` (FusedGELU, custom "
                           "autograd Function in Act): its backward is wrong (2.k.1 input: "
                           "wrong exactly where the input is negative"), line
    assert "off by a constant factor 1.5" in line and "it has no submodules" in line
    assert record.input == "2.k.1 input"
    assert abs(record.actual / record.expected - 1.5) < 1e-6


def test_a_wrong_functional_op_inside_a_module_is_named_without_a_custom_function():
    record = only("module", blocks(4, wrong=(1,), act=DetachedSiLU), _x())
    assert record.status == "fail"
    (line,) = culprits(record)
    assert line.startswith("the wrong gradient comes from `1.k.1` (DetachedSiLU): its "
                           "backward is wrong (1.k.1 input:"), line
    assert "custom autograd Function" not in line


def test_two_wrong_modules_are_both_named():
    record = only("module", blocks(8, wrong=(1, 6)), _x())
    assert record.status == "fail"
    lines = culprits(record)
    assert [line.split("`")[1] for line in lines] == ["1.k.1", "6.k.1"]


def test_a_module_called_twice_is_named_once_with_both_calls():
    record = only("module", SharedAct(), _x(width=6))
    (line,) = culprits(record)
    assert line.startswith("the wrong gradient comes from `act` (FusedGELU, custom autograd "
                           "Function in Act, called 2 times in the forward, wrong at both)")


def test_one_wrong_weight_element_among_4096_is_named_with_its_module_and_index():
    x = torch.randn(16, 64, generator=torch.Generator().manual_seed(0))
    record = only("module", wide_mlp(index=(44, 47), factor=1.1), x)
    (line,) = culprits(record)
    assert line.startswith("the wrong gradient comes from `8` (LinearWrongElement, custom "
                           "autograd Function in OneWrongWeight)"), line
    assert (record.input, record.index) == ("8.weight", "44,47")
    assert abs(record.actual / record.expected - 1.1) < 1e-6


def test_layers_in_module_lists_called_in_a_loop_are_bisected():
    record = only("module", Loop(n=6, wrong=3), _x(4, 6))
    (line,) = culprits(record)
    assert line.startswith("the wrong gradient comes from `acts.3` (FusedGELU, custom "
                           "autograd Function in Act)"), line


def test_a_cnn_with_batch_norm_in_training_mode_is_bisected():
    x = torch.randn(2, 2, 6, 6, generator=torch.Generator().manual_seed(0))
    (line,) = culprits(only("module", SmallCNN(), x))
    assert line.startswith("the wrong gradient comes from `features.2` (FusedGELU"), line


def test_wrong_code_in_a_parents_own_forward_names_the_parent(monkeypatch):
    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 8)

        def forward(self, x):
            y = self.lin(x)
            return y * y.detach()  # the product rule's second half is missing

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), Scaled(), torch.nn.Tanh())
    (line,) = culprits(only("module", model, _x()))
    assert line.startswith("the wrong gradient comes from `1` (Scaled): its backward is wrong")
    assert line.endswith("the modules inside it agree")


def test_a_correct_model_names_nothing_and_costs_the_top_level_check(monkeypatch):
    monkeypatch.setattr(FusedGELU, "scale", 1.0)
    record = only("module", blocks(8, wrong=(1, 6)), _x())
    assert record.status == "pass", record.message
    assert "no module to bisect" in record.message
    assert "2 checks" in record.message  # the quick joint one and the thorough one


def test_the_bisection_costs_the_failing_path_not_every_module():
    record = only("module", blocks(24, wrong=(13,)), _x())
    (line,) = culprits(record)
    assert "`13.k.1`" in line
    # 24 blocks of 5 modules: the chain of blocks is halved, then one block descended
    assert sub_checks(record) <= 2 * 5 + 3 * 2 + 2, record.message


def test_a_small_error_missed_by_the_quick_sub_checks_is_found_by_the_thorough_ones(
        monkeypatch):
    monkeypatch.setattr(FusedGELU, "scale", 1.001)
    record = only("module", blocks(4, wrong=(2,)), _x())
    assert record.status == "fail"
    (line,) = culprits(record)
    assert "`2.k.1`" in line and "off by a constant factor 1.001" in line, line


def _training_case(wrong):
    def loss(model, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(model(x), y)

    return TrainingCase(name="t/blocks", model=lambda: blocks(3, wrong=wrong), loss=loss,
                        batch=lambda gen: (torch.randn(4, 8, generator=gen),
                                           torch.randn(4, 8, generator=gen)),
                        dtypes=(torch.float32,))


def test_a_training_case_with_a_wrong_module_names_it():
    record = on_case("module", _training_case(wrong=(1,)), torch.float32)
    assert record.status == "fail"
    (line,) = culprits(record)
    assert line.startswith("the wrong gradient comes from `1.k.1` (FusedGELU, custom "
                           "autograd Function in Act)"), line


def test_a_correct_training_case_passes(monkeypatch):
    monkeypatch.setattr(FusedGELU, "scale", 1.0)
    record = on_case("module", _training_case(wrong=(1,)), torch.float32)
    assert record.status == "pass", record.message


def test_the_default_check_of_a_model_runs_the_bisection():
    report = check_gradients(blocks(3, wrong=(0,)), _x())
    (record,) = [r for r in report.records if r.check == "module"]
    assert culprits(record) and "`0.k.1`" in culprits(record)[0]


def test_under_pytest_the_assertion_carries_the_culprit():
    with pytest.raises(AssertionError, match=r"the wrong gradient comes from `0\.k\.1`"):
        assert_gradients(blocks(2, wrong=(0,)), _x(), checks=("module",))


def test_record_calls_sees_each_call_of_a_reused_module():
    model = SharedAct()
    calls = modules.record_calls(model, lambda: model(_x(width=6)))
    assert [c.path for c in calls] == ["", "first", "act", "second", "act"]
    assert all(c.end > c.start for c in calls)
    assert isinstance(calls[2].module, Act)
