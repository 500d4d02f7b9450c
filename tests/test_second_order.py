"""The second-order check: double backward vs finite differences of the gradient."""

import pytest
import torch
from checking import only

from harness import Case, Input, check_gradients

import planted


def second(fn, x, **kwargs):
    return only("second-order", fn, x, **kwargs)


def x64(*shape):
    gen = torch.Generator().manual_seed(3)
    return (4 * torch.rand(shape, generator=gen, dtype=torch.float64) - 2).requires_grad_()


def test_correct_second_derivatives_pass():
    for fn in (torch.tanh, lambda x: x**3, lambda x: torch.softmax(x, -1)):
        record = second(fn, x64(4, 5))
        assert record.status == "pass", record.message
    assert second(torch.tanh, x64(4, 5).detach().float().requires_grad_()).status == "pass"


def test_linear_functions_have_a_constant_gradient_and_pass():
    assert second(torch.sum, x64(5)).status == "pass"
    assert second(lambda x: 3 * x, x64(5), twice_differentiable=True).status == "pass"


def test_correct_second_derivatives_pass_on_large_inputs():
    assert second(lambda x: (x**3).sum(), x64(80, 80)).status == "pass"


def test_wrong_second_derivative_fails_while_first_order_passes():
    x = x64(6)
    report = check_gradients(planted.CubeWrongSecond.apply, x, checks=("fd", "second-order"))
    fd, so = report.records
    assert fd.status == "pass"
    assert so.status == "fail"
    assert "constant factor 0.5" in so.pattern  # 3x instead of 6x
    assert "double backward" in so.message


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_second_derivative_wrong_by_varying_ratios_names_no_factor(seed):
    x, y = (torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + k))
            .requires_grad_() for k in (0, 10))
    report = check_gradients(lambda a, b: planted.CubeSecondDetached.apply(a) * b, x, y,
                             checks=("second-order",), seed=seed)
    (so,) = report.records
    assert so.status == "fail"
    # no factor is named: the ratio varies (element by element, or one direction's reading)
    assert "off by a constant factor" not in so.pattern, so.message


def test_not_twice_differentiable_is_a_skip():
    assert second(torch.tanh, x64(3), twice_differentiable=False).status == "skip"


def test_once_differentiable_backward_fails_with_advice():
    class Once(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**2

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * x * g

    assert second(Once.apply, x64(3)).status == "skip"  # check_gradients' default: auto
    record = second(Once.apply, x64(3), twice_differentiable=True)
    assert record.status == "fail"
    assert "zero where the reference is not" in record.pattern
    assert "twice_differentiable=False" in record.pattern


def test_case_declares_twice_differentiable():
    case = Case(name="t/relu", fn=torch.relu, inputs=[Input((3,), avoid=(0.0,))],
                twice_differentiable=False)
    assert not case.twice_differentiable


def test_a_builtin_op_without_double_backward_is_a_skip_naming_it_unless_demanded():
    from torch.nn import functional as F

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 4, 8, generator=gen, requires_grad=True) for _ in range(3))
    attention = lambda q, k, v: F.scaled_dot_product_attention(q, k, v)  # noqa: E731
    (record,) = check_gradients(attention, q, k, v, checks=["second-order"]).records
    assert record.status == "skip", record.message
    assert "torch has no double backward for aten::_scaled_dot_product" in record.message
    (demanded,) = check_gradients(attention, q, k, v, checks=["second-order"],
                                  twice_differentiable=True).records
    assert demanded.status == "error"
    assert "derivative for aten::_scaled_dot_product" in demanded.message


def test_where_the_first_order_is_wrong_too_second_order_says_so_instead_of_locating_again():
    from power_models import ScaleGradAt  # one element's gradient x1.5, through backward too

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 40, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(40, 40, dtype=torch.float64, generator=gen)

    def loss(x):
        return torch.sin(ScaleGradAt.apply(x, 7, 1.5) * w).square().sum()

    (record,) = check_gradients(loss, x, checks=["second-order"]).records
    assert record.status == "fail", record.message
    assert "the first-order gradient of x is wrong too (the fd row says where), so the " \
        "second-order elements were not located, and where only such inputs disagree their " \
        "readings were not re-measured" in record.message
    assert "located by group testing" not in record.message


def test_where_only_inputs_with_a_wrong_gradient_disagree_the_quick_readings_stand():
    """After the fd row on the same example named the first order wrong, second order keeps
    its quick pass's readings: each is a whole backward, and re-measuring them at smaller
    steps (about 20 more) would only repeat what the fd row says."""
    from power_models import ScaleGradAt

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 40, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(40, 40, dtype=torch.float64, generator=gen)
    with_graph = []

    def loss(x):
        with_graph.append(x.requires_grad)
        return torch.sin(ScaleGradAt.apply(x, 7, 1.5) * w).square().sum()

    report = check_gradients(loss, x, checks=["fd", "second-order"])
    assert [r.status for r in report.records] == ["fail", "fail"], str(report)
    # the vjp both rows share, the second order's screen along two directions (central
    # differences of a gradient: two backward passes each, four where one disagrees) and its
    # rounding measurement
    assert sum(with_graph) <= 16, sum(with_graph)


def _sin_backward(detach_incoming: bool):
    return planted._function(torch.sin, lambda x, g: (g.detach() if detach_incoming else g)
                             * torch.cos(x), "Sin")


@pytest.mark.parametrize("shape", [(5,), (3, 40)], ids=["element-by-element", "directions"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_backward_that_detaches_its_incoming_gradient_fails_over_the_cotangent(shape, seed):
    """Its first-order values and its derivative in x are right: only the derivative with
    respect to grad_output (gradgradcheck's second Jacobian) is zero. Small outputs name the
    element, large ones the directions; the correct backward passes at the same seeds."""
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed),
                    requires_grad=True)
    assert not torch.autograd.gradgradcheck(_sin_backward(True), (x,), raise_exception=False)
    report = check_gradients(_sin_backward(True), x, checks=("fd", "second-order"), seed=seed)
    fd, so = report.records
    assert fd.status == "pass", fd.message
    assert so.status == "fail" and so.input == "grad_output", so.message
    assert "zero where the reference is not" in so.pattern
    assert "does not follow the incoming gradient" in so.message
    assert "agree: input 0" in so.message
    if len(shape) == 1:
        assert so.index != "" and "mismatched elements: 5 / 5" in so.message
    else:
        assert "random directions" in so.message
    good = check_gradients(_sin_backward(False), x, checks=("second-order",), seed=seed)
    (record,) = good.records
    assert record.status == "pass", record.message
    assert "grad_output: any single element off by more than" in record.message


def test_a_wrong_second_derivative_over_the_cotangent_is_caught_where_its_size_says():
    """A backward whose graph scales grad_output by 1.5 in its derivative only (its values
    stay right): the cotangent's verdict fails at every seed and names the factor."""

    # value g, derivative in g 1.5
    half_tracked = planted._function(
        torch.sin, lambda x, g: (1.5 * g - 0.5 * g.detach()) * torch.cos(x), "HalfTracked")
    for seed in range(5):
        x = torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(seed),
                        requires_grad=True)
        (record,) = check_gradients(half_tracked, x, checks=("second-order",),
                                    seed=seed).records
        assert record.status == "fail" and record.input == "grad_output", record.message
        assert "constant factor 1.5" in record.pattern


@pytest.mark.parametrize("how", ["no_grad", "detach", "numpy"])
def test_a_backward_that_silently_does_not_differentiate_fails_unless_marked_or_declared(how):
    """torch returns zeros through such a backward with no error (gradgradcheck fails it):
    not a skip, a failure naming @once_differentiable and twice_differentiable=False. The
    same backward marked @once_differentiable, or declared, stays a skip."""

    def backward(x, g):
        if how == "no_grad":
            with torch.no_grad():
                return 2 * x * g
        if how == "detach":
            return (2 * x * g).detach()
        return torch.from_numpy(2 * x.detach().numpy() * g.detach().numpy())

    square = planted._function(lambda x: x**2, backward, "Square")
    x = x64(5)
    assert not torch.autograd.gradgradcheck(square, (x,), raise_exception=False)
    record = second(square, x)
    assert record.status == "fail", record.message
    assert "zero where the reference is not" in record.pattern
    assert "@once_differentiable" in record.message
    assert "twice_differentiable=False" in record.message
    assert second(square, x, twice_differentiable=False).status == "skip"


def test_a_backward_that_ignores_grad_output_fails_over_it_naming_the_first_order():
    """gradgradcheck passes it (the derivative of 2x in v is 0, read and computed); the
    comparison over grad_output holds the backward to linearity in it, so it fails there and
    says the first order is the cause, instead of crashing on the shapes (as it did)."""
    x = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
    (record,) = check_gradients(planted.square_ignores_grad, x, checks="second-order").records
    assert record.status == "fail"
    assert "double backward's d/d(grad_output) vs the first backward's values" in record.message
    assert "the first-order gradient of input 0 is wrong (the fd row says where)" in record.message
    assert "detaches it" not in record.message


def _writes_into_grad_output(x, g):
    g.view(-1).mul_(2)
    return x * g


WritesIntoGradOutput = planted._function(lambda x: x * x, _writes_into_grad_output,
                                         "WritesIntoGradOutput")
"""x^2 whose backward doubles a view of grad_output in place, then uses it: values right
(2 x g), but no double backward can go through the write (gradgradcheck raises)."""


def test_a_backward_writing_into_a_view_of_grad_output_is_an_error_row_saying_so():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    report = check_gradients(WritesIntoGradOutput, x,
                             checks=("fd", "second-order", "reentrancy"))
    fd, second, reentrancy = report.records
    assert fd.status == "pass"  # the values are right: every reading's cotangent is a copy
    assert second.status == "error"
    assert "a view of a leaf Variable that requires grad is being used in an in-place" \
        in second.message
    assert "test_second_order.py:" in second.message  # the real frame, where it writes
    assert "in _writes_into_grad_output)" in second.message
    assert "the backward writes in place into its incoming gradient" in second.message
    assert "the backward changed the incoming gradient (grad_output) in place" \
        in reentrancy.message
