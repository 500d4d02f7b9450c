"""Training-step cases: the tutorials' loops pass, planted loop bugs fail with the reason."""

import dataclasses

import pytest
import torch
from checking import TRAINING, on_case

from gradharness_cases.training import TRAINING_CASES, Holder, _p_loss, wrong_way_step
from harness import TrainingCase

CASES = {c.name: c for c in TRAINING_CASES}


def run(check, case, dtype=torch.float64):
    return on_case(check, case, dtype)


def test_sgd_p_step_reproduces_the_notebook_numbers():
    case = CASES["tutorial/sgd-p-step"]
    model = case.model().double()
    case.run_step(model, torch.optim.SGD(model.parameters(), lr=case.lr), ())
    torch.testing.assert_close(model.p.grad, torch.tensor([0.0, 60, 12, 12], dtype=torch.float64))
    torch.testing.assert_close(model.p.detach(),
                               torch.tensor([1.0, -57, -10, -10], dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("name", ["tutorial/sgd-p-step", "tutorial/a-function-sgd",
                                  "tutorial/tiny-model-step"])
@pytest.mark.parametrize("check", TRAINING)
def test_tutorial_loops_pass(check, name, dtype):
    record = run(check, CASES[name], dtype)
    assert record.status in ("pass", "skip"), record.message


def test_step_without_zero_grad_accumulates():
    def forgetful(model, optimizer, batch):
        _p_loss(model, batch).backward()
        optimizer.step()

    case = dataclasses.replace(CASES["tutorial/sgd-p-step"], step=forgetful)
    record = run("step-zeroing", case)
    assert record.status == "fail"
    assert "gradients accumulate across steps" in record.message
    assert "call optimizer.zero_grad() each step" in record.message


def test_wrong_way_sgd_never_updates():
    case = dataclasses.replace(CASES["tutorial/wrong-way-sgd"], expected_failures={})
    record = run("step-updates", case)
    assert "never updates the parameters the optimizer holds" in record.message
    assert "not backpropagated to the model" in run("step-zeroing", case).message


def test_summed_loss_fails_per_sample():
    def summed(model, batch):
        (data,) = batch
        return ((data * model.p - 2 * data) ** 2).sum()

    case = dataclasses.replace(CASES["tutorial/a-function-sgd"], loss=summed)
    record = run("per-sample", case)
    assert record.status == "fail"
    assert "exactly 100 times" in record.message
    assert "does not average over the batch" in record.message


def test_frozen_parameter_is_named():
    def model():
        m = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
        m[0].weight.requires_grad_(False)
        return m

    case = TrainingCase(name="t/frozen", model=model, loss=lambda m, b: m(b[0]).pow(2).mean(),
                        batch=lambda gen: (torch.randn(4, 3, generator=gen, dtype=torch.float64),))
    record = run("step-updates", case)
    assert record.status == "pass" and "did not move in the step: 0.weight" in record.message


@pytest.mark.parametrize("kwargs, message", [
    (dict(name=""), "non-empty"), (dict(loss=3), "loss must be callable"),
    (dict(lr=0.0), "lr must be > 0"), (dict(step="x"), "step must be callable")])
def test_training_case_rejects(kwargs, message):
    base = dict(name="t/x", model=lambda: Holder(torch.zeros(2)), batch=lambda g: (),
                loss=_p_loss)
    with pytest.raises(ValueError, match=message):
        TrainingCase(**{**base, **kwargs})


def test_wrong_way_step_is_the_tutorials():
    model = Holder(torch.tensor([1.0, 3.0, 2.0, 2.0]))
    before = model.p.detach().clone()
    wrong_way_step(model, torch.optim.SGD(model.parameters(), lr=0.1), ())
    assert torch.equal(model.p.detach(), before)
