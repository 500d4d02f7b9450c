"""Float32 rounding where a saturated intermediate makes it larger than an allowance sized
for the result (softmax(30 x): y = 1 exactly; log_softmax's 1 + 1e-7 summed to 1): no false
alarm from any family that compares derivatives, and a wrong derivative still caught."""

import pytest
import torch

from harness import check_gradients

import planted

SCALE = 30.0
SATURATED = {
    "softmax": lambda x: torch.softmax(x * SCALE, -1),
    "log_softmax": lambda x: torch.log_softmax(x * SCALE, -1),
    "logsumexp": lambda x: torch.logsumexp(x * SCALE, -1),
    "sigmoid": lambda x: torch.sigmoid(x * 100),  # saturates its float32 rounding past 30
}
COMPARING = ("fd", "second-order", "forward-ad", "fwd-over-rev")
SEEDS = range(20)  # before the rounding-aware allowances, 1 to 5 of these 20 failed each


def _x(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(4, 6, generator=gen).requires_grad_()


@pytest.mark.parametrize("name", list(SATURATED))
def test_correct_saturated_functions_pass_in_float32_at_every_seed(name):
    failed = []
    for seed in SEEDS:
        report = check_gradients(SATURATED[name], _x(seed), checks=COMPARING)
        failed += [(seed, r.check, r.pattern) for r in report.records if r.status != "pass"]
    assert failed == []


def _softmax_wrong_at(index: int, factor: float):
    class WrongElement(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = torch.softmax(x * SCALE, -1)
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            grad = SCALE * y * (g - (g * y).sum(-1, keepdim=True))
            return grad * torch.ones_like(grad).view(-1).index_fill(0, torch.tensor(index),
                                                                     factor).view_as(grad)

    return WrongElement.apply


@pytest.mark.parametrize("seed", [1, 9, 13])
def test_a_wrong_element_of_a_saturated_softmax_is_still_caught_and_named(seed):
    x = _x(seed)
    # the element with the largest gradient: a 10% error there is far above rounding
    probe = torch.softmax(x.detach().double() * SCALE, -1)
    cot = torch.randn(4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    (exact,) = torch.autograd.grad((torch.softmax(x.double() * SCALE, -1) * cot).sum(), x)
    index = int(exact.abs().flatten().argmax())
    assert probe.max() > 0.99
    report = check_gradients(_softmax_wrong_at(index, 1.1), x, checks="fd")
    (record,) = report.records
    assert record.status == "fail"
    assert record.index == ",".join(map(str, divmod(index, 6)))


def test_wrong_second_derivatives_and_jvps_still_fail_in_float32():
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(0)).requires_grad_()
    second = check_gradients(planted.CubeWrongSecond.apply, x, checks="second-order")
    assert [r.status for r in second.records] == ["fail"]
    jvp = check_gradients(planted.SquareWrongJvp.apply, x, checks=("forward-ad",))
    assert [r.status for r in jvp.records] == ["fail"]
    assert "the jvp is wrong" in jvp.records[0].message
