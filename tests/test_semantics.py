"""Autograd-semantics checks: contracts honoured pass, planted breakers fail with the reason."""

import pytest
import torch
from checking import SEMANTIC, on_example
from torch import nn

from harness import Case, Input
from harness.inputs import draw_example

import planted


def run(check, fn, shape=(5,), dtype=torch.float64, **case_kwargs):
    case = Case(name="t/case", fn=fn, inputs=[Input(shape, low=0.5, high=2.0, name="x")],
                **case_kwargs)
    record = on_example(check, draw_example(case, dtype, "cpu", 0))
    return record


CORRECT = {"square": planted.square, "tanh": torch.tanh, "sum": torch.sum,
           "add-one": lambda x: x + 1, "view": lambda x: x.view(-1, 1),
           "softmax": lambda x: torch.softmax(x, 0)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("fn", CORRECT.values(), ids=CORRECT.keys())
@pytest.mark.parametrize("check", [c for c in SEMANTIC if c != "retain-grad"])
def test_contracts_hold_for_correct_functions(check, fn, dtype):
    record = run(check, fn, dtype=dtype)
    assert record.status == "pass", record.message


@pytest.fixture
def stateful():
    planted.StatefulSquare.calls = 0
    return planted.StatefulSquare.apply


def test_stateful_backward_fails_accumulation(stateful):
    record = run("accumulation", stateful)
    assert record.status == "fail"
    assert "after 2 backward passes (retain_graph=True), .grad of x is not 2 x" in record.message
    assert "keeps state between calls" in record.message


def test_stateful_backward_fails_reentrancy(stateful):
    record = run("reentrancy", stateful)
    assert "2 backward passes with the same cotangent differ for x" in record.message
    assert "keeps state between calls" in record.message
    assert "declare Case(nondeterministic_tol=...)" in record.message


class NoisyBackward(torch.autograd.Function):
    """x^2 whose backward adds noise of about 1e-12, like atomic adds in another order."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g + 1e-12 * torch.randn_like(x)


def test_declared_nondeterminism_is_measured_not_failed():
    record = run("reentrancy", NoisyBackward.apply, nondeterministic_tol=1e-9)
    assert record.status == "pass"
    assert "nondeterministic backward measured: largest spread" in record.message
    assert "over 5 runs, within the declared nondeterministic_tol 1e-09" in record.message


def test_nondeterminism_beyond_the_declared_tolerance_fails():
    record = run("reentrancy", NoisyBackward.apply, nondeterministic_tol=1e-15)
    assert record.status == "fail"
    assert "5 backward passes with the same cotangent differ for x" in record.message
    assert "more than the declared nondeterministic_tol 1e-15" in record.message


def test_stateful_backward_fails_zeroing(stateful):
    record = run("zeroing", stateful)
    assert "after .grad.zero_(), the next backward did not give the single gradient" \
        in record.message


def test_autograd_grad_must_not_touch_dot_grad():
    record = run("accumulation", planted.square_writes_grad)
    assert "torch.autograd.grad changed .grad" in record.message


def test_a_tensor_kept_on_ctx_outside_save_for_backward_is_a_warning():
    record = run("retain-graph", planted.SquareKeepsInput.apply)
    assert record.status == "warn"  # the gradient is right; the memory is held
    assert "  - warning: a second backward without retain_graph succeeded" in record.message
    assert "succeeded because SquareKeepsInput.copy holds a tensor on ctx" in record.message
    assert "ctx.save_for_backward" in record.message


def test_a_saved_tensor_the_backward_never_reads_is_not_a_failure():
    record = run("retain-graph", planted.ReverseGradient.apply)
    assert record.status == "pass", record.message
    assert "saved 1 tensor(s) that the backward never read" in record.message


def test_nothing_saved_is_said_not_failed():
    record = run("retain-graph", lambda x: x + 1)
    assert record.status == "pass"
    assert "saved no tensors" in record.message


def test_saved_graph_raises_torch_error_on_second_backward():
    assert run("retain-graph", torch.exp).status == "pass"


def test_non_scalar_output_needs_a_gradient():
    assert run("non-scalar", torch.exp).status == "pass"
    record = run("non-scalar", torch.sum)
    assert record.status == "pass" and "scalar output" in record.message


def test_stateful_backward_fails_non_scalar(stateful):
    record = run("non-scalar", stateful)
    assert "backward(gradient=v) into .grad differs from torch.autograd.grad" in record.message


def test_function_that_forces_grad_mode_fails_graph_switches():
    def forced(x):
        with torch.enable_grad():
            return x * 2

    record = run("graph-switches", forced)
    assert "under torch.no_grad() the output still has a grad_fn" in record.message


def test_hidden_parameter_keeps_tracking_after_requires_grad_false():
    hidden = nn.Parameter(torch.ones(5, dtype=torch.float64))
    record = run("graph-switches", lambda x: x * hidden)
    assert "with requires_grad_(False) on every input, the output still requires grad" \
        in record.message


def test_backward_that_mutates_grad_output():
    record = run("reentrancy", planted.square_scales_grad_output)
    assert "changed the incoming gradient (grad_output) in place" in record.message


def test_backward_that_mutates_its_input():
    record = run("reentrancy", planted.square_nudges_input)
    assert "changed an input in place: x" in record.message


def test_grads_that_share_storage_fail():
    def fn(x, y):
        if x.requires_grad and x.is_leaf:
            x.register_post_accumulate_grad_hook(lambda p: setattr(y, "grad", p.grad))
        return x * y

    case = Case(name="t/shared", fn=fn, inputs=[Input((4,), name="x"), Input((4,), name="y")])
    record = on_example("reentrancy", draw_example(case, torch.float64, "cpu", 0))
    assert "the .grad of y shares storage with the .grad of x" in record.message


def test_view_grad_sharing_the_passed_gradient_is_a_note():
    record = run("reentrancy", lambda x: x.view(-1, 1))
    assert record.status == "pass"
    assert "shares storage with the gradient passed to backward()" in record.message


def test_sgd_contract(monkeypatch):
    assert run("optimizer", torch.tanh).status == "pass"

    class DoubledSGD(torch.optim.SGD):
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    p.data.add_(p.grad, alpha=-2 * group["lr"])

    monkeypatch.setattr(torch.optim, "SGD", DoubledSGD)
    record = run("optimizer", torch.tanh)
    assert "one SGD step (lr=0.1) did not move x by exactly -lr * grad" in record.message


def _chain_intermediates(p):
    w = 10 * p
    return w**2, {"w": w}


def test_retain_grad_of_named_intermediates():
    kwargs = dict(intermediates=_chain_intermediates, intermediate_grad=lambda p: {"w": 20 * p})
    record = run("retain-grad", lambda p: (10 * p) ** 2, shape=(), **kwargs)
    assert record.status == "pass", record.message
    wrong = dict(kwargs, intermediate_grad=lambda p: {"w": 200 * p})
    record = run("retain-grad", lambda p: (10 * p) ** 2, shape=(), **wrong)
    assert "retained .grad of intermediate w disagrees with the analytic one" in record.message


def test_retain_grad_skips_without_intermediates():
    assert run("retain-grad", torch.exp).status == "skip"


def test_grad_fn_chain_is_walked_through_next_functions():
    chain = ("SumBackward0", "AddBackward0", "MulBackward0", "SinBackward0", "AccumulateGrad")
    fn = lambda a: (2 * torch.sin(a) + 1).sum()  # noqa: E731
    assert run("graph-switches", fn, grad_fn_chain=chain).status == "pass"
    record = run("graph-switches", lambda a: (2 * torch.cos(a) + 1).sum(), grad_fn_chain=chain)
    assert "grad_fn chain is SumBackward0 -> AddBackward0 -> MulBackward0 -> CosBackward0" \
        in record.message
