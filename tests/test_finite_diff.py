"""The finite-difference check: right gradients pass, planted bugs fail with the right story."""

import collections

import pytest
import torch

from harness import check_gradients
from harness.numerics.probes import balanced, signs
from harness.numerics.screen import ALONG_DIRECTIONS, SCREEN_DIRECTIONS

import planted

DTYPES = [pytest.param(torch.float64, id="float64"), pytest.param(torch.float32, id="float32")]


def fd(fn, *inputs, **kwargs):
    report = check_gradients(fn, *inputs, checks=("fd",), **kwargs)
    (record,) = report.records
    return record


def leaf(*shape, low=-2.0, high=2.0, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)
    return x.to(dtype).requires_grad_()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", [planted.square, torch.sin, torch.tanh, torch.exp,
                                lambda x: torch.softmax(x, -1), lambda x: (x**3).sum()],
                         ids=["square", "sin", "tanh", "exp", "softmax", "cube-sum"])
def test_correct_gradients_pass(fn, dtype):
    record = fd(fn, leaf(5, 7, dtype=dtype))
    assert record.status == "pass", record.message


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_magnitudes_pass(dtype):
    x = leaf(30, low=1e5, high=1e7, dtype=dtype)
    assert fd(lambda x: (x**2).sum() / 1e9, x).status == "pass"
    assert fd(torch.linalg.vector_norm, x).status == "pass"


@pytest.mark.parametrize("dtype", DTYPES)
def test_steep_functions_near_the_domain_edge_pass(dtype):
    x = leaf(20, low=1e-4, high=1e-2, dtype=dtype)
    for fn in (torch.log, torch.sqrt, torch.reciprocal):
        record = fd(fn, x)
        assert record.status == "pass", record.message


def test_steps_shrink_when_they_leave_an_undeclared_domain():
    x = torch.tensor([1e-7, 3e-9, 4.0], dtype=torch.float64, requires_grad=True)
    for fn in (torch.sqrt, torch.log):
        record = fd(fn, x)
        assert record.status == "pass", record.message


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_input_passes_along_random_directions(dtype):
    record = fd(torch.sin, leaf(100, 100, dtype=dtype))
    assert record.status == "pass", record.message


def test_large_input_failure_counts_directions_not_elements():
    record = fd(planted.square_sign_flip, leaf(100, 100))
    assert "disagrees along 3 of 3 random directions (over all 10000 elements)" in record.message
    assert "sign flipped" in record.pattern


def test_sign_flip():
    record = fd(planted.square_sign_flip, leaf(6))
    assert record.status == "fail"
    assert "sign flipped" in record.pattern
    assert "reproduce:" in record.message


def test_missing_factor():
    record = fd(planted.sin_missing_half, leaf(6))
    assert "constant factor 0.5" in record.pattern


def test_k_times_says_accumulated():
    record = fd(planted.square_three_times, leaf(6))
    assert "exactly 3 times" in record.pattern
    assert "zero .grad" in record.pattern


def test_wrong_only_for_negative_inputs():
    record = fd(planted.square_wrong_negative, leaf(20))
    assert record.status == "fail"
    assert "where the input is negative" in record.pattern


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_wrong_only_for_negative_inputs_of_a_large_tensor_is_named_without_a_formula(dtype,
                                                                                   seed):
    record = fd(planted.square_wrong_negative, leaf(100, 100, dtype=dtype, seed=seed))
    assert record.status == "fail"
    assert "the error lies where the input is negative" in record.pattern
    assert "random directions over them disagree (3 of 3)" in record.pattern
    assert "constant factor 1.5" in record.pattern


def test_a_straight_through_estimator_is_not_said_to_cross_kinks():
    record = fd(planted.RoundStraightThrough.apply, leaf(24, low=0.01, high=0.24))
    assert record.status == "fail"
    assert "the reference is 0 on every element" in record.pattern
    assert "kink" not in record.message


def test_a_wrong_sparsemax_backward_gets_no_sign_story_and_no_kink_note():
    x = leaf(24, seed=3)
    record = fd(planted.SparsemaxNoMean.apply, x)
    support = int((planted.sparsemax(x.detach()) > 0).sum())
    assert record.status == "fail"
    assert 0 < support < int((x > 0).sum())  # the support is not the positive inputs
    assert "where the input is" not in record.pattern
    assert "kink" not in record.message
    assert fd(planted.sparsemax, x).status == "pass"


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_wrong_element_in_a_large_tensor_is_located(dtype):
    record = fd(planted.sin_one_wrong, leaf(100, 100, dtype=dtype))
    assert record.status == "fail"
    assert record.index == "12,34"
    assert "one element wrong" in record.pattern
    assert "input 0[12, 34]" in record.message
    assert record.actual == pytest.approx(1.5 * record.expected, rel=1e-3)


def test_transposed_matmul_gradient():
    a, b = leaf(5, 5, seed=1), leaf(5, 5, seed=2)
    record = fd(planted.MatmulTransposed.apply, a, b)
    assert record.status == "fail"
    assert record.input == "input 0"
    assert "transposed" in record.pattern


def test_swapped_gradients():
    x, y = leaf(4, seed=1), leaf(4, seed=2)
    record = fd(planted.MulExpSwapped.apply, x, y)
    assert "gradients of input 0 and input 1 are swapped" in record.pattern


@pytest.mark.parametrize("shape", [(8,), (300, 40)], ids=["elementwise", "directional"])
def test_a_0_01_percent_error_fails_in_float64(shape):
    record = fd(planted.square_tiny_error, leaf(*shape))
    assert record.status == "fail"
    if len(shape) == 1:
        assert "constant factor 1.0001" in record.pattern


SEEDS = 40


@pytest.mark.parametrize("size", [5, 8, 16, 32])
def test_a_constant_error_on_every_element_cannot_hide_from_the_screen(size):
    """A backward off by one constant on every element (5e-6 of its largest: 5 allowances)
    fails at every seed: the screen holds each direction to the smallest element's allowance,
    and along its second, all-positive direction a constant cannot cancel. A screen held to
    the direction's summed allowance along two sign directions let 4 of 40 seeds pass at 8
    elements, 2 at 16, 1 at 32."""
    def tanh_x(x):
        return torch.tanh(x) * x

    class ForgetsMean(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return tanh_x(x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            t = torch.tanh(x)
            gx = g * ((1 - t * t) * x + t)
            return gx + 5e-6 * gx.abs().max()

    passed = []
    for seed in range(SEEDS):
        x = torch.randn(size, generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64, requires_grad=True)
        if check_gradients(ForgetsMean.apply, x, checks=("fd",), seed=seed).ok:
            passed.append(seed)
        assert check_gradients(tanh_x, x, checks=("fd",), seed=seed).ok
    assert not passed, (size, passed)


def test_backward_that_ignores_its_incoming_gradient():
    record = fd(planted.square_ignores_grad, leaf(5))
    assert record.status == "fail"
    assert "ignores its incoming gradient" in record.pattern


def test_scalar_output_cotangent_is_random_too():
    """Even for a scalar output, a backward that drops grad_output is caught."""
    record = fd(lambda x: planted.square_ignores_grad(x).sum(), leaf(5))
    assert record.status == "fail"


def test_float32_run_of_a_bug_fails_too():
    record = fd(planted.sin_missing_half, leaf(6, dtype=torch.float32))
    assert record.status == "fail" and record.dtype == "float32"


def test_gradcheck_misses_what_the_harness_catches():
    """gradcheck fast mode passes a 0.01% error; the harness does not."""
    x = leaf(300, 40)
    assert torch.autograd.gradcheck(planted.square_tiny_error, (x,), fast_mode=True)
    assert fd(planted.square_tiny_error, x).status == "fail"


class SinCosWrongSecondOutput(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sin(x), torch.cos(x)

    @staticmethod
    def backward(ctx, g_sin, g_cos):
        (x,) = ctx.saved_tensors
        return torch.cos(x) * g_sin + torch.sin(x) * g_cos  # sign of d cos wrong


def test_tuple_outputs_get_a_cotangent_each():
    record = fd(SinCosWrongSecondOutput.apply, leaf(8))
    assert record.status == "fail"
    assert fd(lambda x: (torch.sin(x), torch.cos(x)), leaf(8)).status == "pass"


def test_output_that_does_not_depend_on_an_input_reports_none_gradient():
    record = fd(lambda x, y: (x * 1.0).detach() * 0 + torch.sin(y) * 0 + x.detach() ** 2,
                leaf(3), leaf(3, seed=1))
    assert record.status == "fail"
    assert "no gradient (None)" in record.pattern


def test_inputs_closer_to_a_kink_than_the_step_are_not_false_alarms():
    """relu at 1e-7 and -6e-8: steps h ~ 6e-6 straddle the kink; h/256 settles it. (Closer
    than 2h/256 ~ 5e-8, or exactly on the kink, needs one-sided differences: not yet.)"""
    x = torch.tensor([1e-7, -6e-8, 0.5, -0.5], dtype=torch.float64, requires_grad=True)
    record = fd(torch.relu, x)
    assert record.status == "pass", record.message


def test_tiny_model_with_a_unit_next_to_its_relu_kink_passes():
    torch.manual_seed(0)
    x, w = torch.randn(4, 50, dtype=torch.float64), torch.randn(8, 50, dtype=torch.float64)
    w[0] -= ((x[0] @ w[0]) - 1e-9) / (x[0] @ x[0]) * x[0]  # pre-activation (0, 0) at 1e-9
    w.requires_grad_()
    report = check_gradients(lambda w, x: torch.relu(x @ w.T).square().sum(), w, x,
                             checks=("fd",), seed=3)
    assert report.ok, str(report)


@pytest.mark.parametrize("check", ["fd", "second-order"])
def test_saturated_softmax_in_float32_is_not_a_false_alarm(check):
    """s = 1 - 6e-5 in float32: the cancellation in 1 - s is measured as rounding noise."""
    x = torch.tensor([[22.354, -8.6474, -9.6274, 12.563]] * 3, requires_grad=True)
    (record,) = check_gradients(lambda x: torch.logsumexp(x, -1), x, checks=(check,)).records
    assert record.status == "pass", record.message


def _float32_only(fn):
    """Stands in for a Triton/CUDA kernel compiled for float32 only."""

    def kernel(x):
        if x.dtype != torch.float32:
            raise TypeError(f"kernel supports float32 only, got {x.dtype}")
        return fn(x)

    return kernel


def test_float32_only_kernel_is_checked_in_float32_and_says_so():
    x = leaf(6, 7, dtype=torch.float32)
    report = check_gradients(_float32_only(torch.tanh), x, checks=("fd", "second-order"))
    assert report.ok, str(report)
    assert "fn does not run in float64" in report.records[0].message


@pytest.mark.parametrize("shape", [(6,), (100, 100)], ids=["elementwise", "directional"])
def test_float32_only_kernel_with_a_bug_fails(shape):
    record = fd(_float32_only(planted.sin_missing_half), leaf(*shape, dtype=torch.float32))
    assert record.status == "fail"
    assert "references are evaluated in float32" in record.message


@pytest.mark.parametrize("fn, x, named", [
    (torch.relu, [0.0, 0.0, 1.5, -2.0], True),
    (lambda x: torch.clamp(x, -1.0, 1.0), [-1.0, 1.0, 0.5, 2.0], True),
    # symmetric kinks: central differences give the average, which torch's convention is,
    # so there is no disagreement to explain
    (torch.abs, [0.0, 0.7, -0.3], False),
    (lambda x: x.max(), [1.0, 1.0, 0.2], False),
    (lambda x: torch.maximum(x, torch.zeros_like(x)), [0.0, 2.0], False),
], ids=["relu", "clamp", "abs", "max-tie", "maximum"])
def test_kinks_are_classified_not_failed(fn, x, named):
    x = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    record = fd(fn, x)
    assert record.status == "pass", record.message
    if named:
        assert "kink(s), accepted: kink at " in record.message
        assert "lies between them" in record.message


def test_kinks_in_a_large_tensor_are_classified():
    x = torch.zeros(200, 200, dtype=torch.float64)
    x[::2] = torch.randn(100, 200, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    record = fd(torch.relu, x.requires_grad_())
    assert record.status == "pass", record.message
    assert "kink(s), accepted" in record.message


def test_a_wrong_slope_next_to_a_kink_still_fails():
    """abs with a backward of 3*sign(x): the kink at 0 is accepted, the wrong slopes are not."""
    wrong_abs = planted._function(torch.abs, lambda x, g: 3 * torch.sign(x) * g, "WrongAbs")
    record = fd(wrong_abs, torch.tensor([0.0, 0.7, -0.3], dtype=torch.float64,
                                        requires_grad=True))
    assert record.status == "fail"
    assert "constant factor 3" in record.pattern or "3 times" in record.pattern


def test_one_wrong_element_among_100k_is_localized():
    record = fd(planted.sin_one_wrong, leaf(400, 250))
    assert record.status == "fail"
    assert record.index == "12,34" and "one element wrong (located by group testing" \
        in record.pattern
    assert "mismatched elements: 1 / 100000" in record.message


@pytest.mark.parametrize("shape", [(5,), (30,), (40, 40)], ids=str)
def test_a_nan_gradient_never_passes(shape):
    record = fd(planted.sin_nan_at_3, leaf(*shape))
    assert record.status == "fail"
    assert "the gradient is NaN or infinite at 1 element(s)" in record.pattern
    where = "[3]" if len(shape) == 1 else "[0, 3]"
    assert f"input 0{where}" in record.pattern


def cube_off(factor: float, points: list):
    """x**3 whose backward is `factor` times the truth; every input finite differences read
    (the calls without a graph) is noted in `points`."""

    class CubeOff(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            if not x.requires_grad:  # finite differences' readings, not autograd's call
                points.append(tuple(x.flatten().tolist()))
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3 * factor * x * x

    return CubeOff.apply


def test_a_failing_check_reads_each_point_once_across_its_passes():
    """The quick pass, the full pass after it, and the confirmations read the same elements at
    the same steps: each point is evaluated once (differences.remembering)."""
    points = []
    x = torch.linspace(0.5, 2.0, 12, dtype=torch.float64).reshape(3, 4).requires_grad_()
    report = check_gradients(cube_off(1.02, points), x, checks=("fd",))
    assert not report.ok and "off by a constant factor 1.02" in str(report)
    assert len(points) > 2 * x.numel()  # every element read, confirmations beside
    repeated = [point for point, n in collections.Counter(points).items() if n > 1]
    # x itself too: the example's forward is every difference's centre, and the one call at x
    # that asks whether fn is deterministic (diagnose.determinism) is compared with it
    assert repeated == []


def test_the_full_pass_reads_only_the_inputs_the_quick_pass_failed():
    """A quick pass stands input by input: after one input fails it, the full pass (localizing
    the wrong element) moves none of the inputs that passed."""
    moved = collections.Counter()
    gen = torch.Generator().manual_seed(0)
    a0, b0 = (torch.randn(300, dtype=torch.float64, generator=gen) for _ in range(2))

    class OneOff(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            if not a.requires_grad:  # finite differences' readings
                moved["a"] += not torch.equal(a, a0)
                moved["b"] += not torch.equal(b, b0)
            ctx.save_for_backward(a, b)
            return (torch.sin(a) * b).sum()

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            ga = g * torch.cos(a) * b
            ga[17] *= 1.5
            return ga, g * torch.sin(a)

    report = check_gradients(OneOff.apply, a0.clone().requires_grad_(),
                             b0.clone().requires_grad_(), checks=("fd",))
    (record,) = report.records
    assert record.status == "fail" and record.input == "input 0" and record.index == "17", \
        record.message
    assert moved["a"] > 20  # located: many readings
    # the quick screen's (at one step each) and the rounding measurement's, which moves all
    assert moved["b"] == 2 * ALONG_DIRECTIONS + 1


def test_second_order_takes_the_first_order_verdict_from_the_fd_row_before_it():
    """Where the fd family ran on the same example, second order does not compare the first
    order again to word its hint: it reads no more first-order points than it would alone,
    minus that comparison."""
    from power_models import ScaleGradAt

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 40, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(40, 40, dtype=torch.float64, generator=gen)
    calls = collections.Counter()

    def loss(x):
        calls["forward"] += 1
        return torch.sin(ScaleGradAt.apply(x, 7, 1.5) * w).square().sum()

    alone = check_gradients(loss, x, checks=("second-order",)).records[0]
    first_alone, calls["forward"] = calls["forward"], 0
    check_gradients(loss, x, checks=("fd",))
    fd_alone, calls["forward"] = calls["forward"], 0
    together = check_gradients(loss, x, checks=("fd", "second-order"))
    assert calls["forward"] < fd_alone + first_alone - 10, (calls, fd_alone, first_alone)
    second = together.records[1]
    assert second.status == alone.status == "fail"
    assert "the first-order gradient of x is wrong too" in second.message


def test_a_wrong_element_on_a_smooth_function_is_confirmed_in_two_smaller_steps():
    """Where two sharp readings at smaller steps agree with each other (and not with the
    gradient), the confirmation stops there and its kink test looks only at those steps; a
    kink exactly at the point still shows (test_diagnose's kink tests)."""
    points = []
    x = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    (record,) = check_gradients(cube_off(1.1, points), x, checks=("fd",)).records
    assert record.status == "fail" and "actual = 1.1 x expected" in record.message, \
        record.message
    # the point, +-h and +-2h at the first step, then at h/16 and h/256: four each; the
    # one-sided slopes at those two steps read the same points
    assert len(set(points)) <= 1 + 4 * 3, sorted(set(points))


def test_past_the_first_smooth_disagreements_elements_are_read_at_one_step():
    """A backward off everywhere: the first SETTLE_AFTER disagreeing elements are read at
    both steps (h and 2h: their Richardson value and error estimate, for re-measuring), the
    rest at h alone; the count and the pattern still cover every element."""
    from harness.numerics.compare import SETTLE_AFTER

    points = []
    x = torch.linspace(0.5, 2.0, 30, dtype=torch.float64).requires_grad_()
    (record,) = check_gradients(cube_off(1.02, points), x, checks=("fd",)).records
    assert record.status == "fail", record.message
    assert "mismatched elements: 30 / 30" in record.message
    assert "off by a constant factor 1.02" in record.message
    one_step, both_steps = 2 * x.numel(), 4 * x.numel()
    # beside the elements: the point itself, the screen's directions, the rounding
    # measurement and the confirmations at smaller steps
    assert len(set(points)) <= one_step + 2 * SETTLE_AFTER + 30 < both_steps, len(set(points))


def _scaled_product(offset: float, wrong: int):
    """tanh(a) * b * 100 + b / 100, where b's gradient is ~100x a's. Its backward adds
    `offset` x the largest element of input `wrong`'s gradient to every element of it."""
    calls = collections.Counter()

    class ScaledProduct(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            calls["forward"] += 1
            ctx.save_for_backward(a, b)
            return torch.tanh(a) * b * 100 + b / 100

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            grads = [g * (1 - torch.tanh(a) ** 2) * b * 100, g * (torch.tanh(a) * 100 + 0.01)]
            grads[wrong] = grads[wrong] + offset * grads[wrong].abs().max()
            return tuple(grads)

    return ScaledProduct.apply, calls


@pytest.mark.parametrize("wrong", [0, 1], ids=["smaller-gradient", "larger-gradient"])
def test_several_inputs_are_screened_together_each_at_its_own_power(wrong):
    """The inputs move at once (4 forward calls for both, beside the example's own; a
    reading that doubts on its step's truncation takes its Richardson and Romberg pairs, 4
    more), held to the smallest element allowance of either: an error of 5 allowances on
    every element of either input is caught at every seed, as input by input, even on the
    input whose gradient is 100x smaller."""
    together = 0
    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        a = torch.randn(16, generator=gen, dtype=torch.float64, requires_grad=True)
        b = (torch.rand(16, generator=gen, dtype=torch.float64) / 100 + 1e-3).requires_grad_()
        right, calls = _scaled_product(0.0, wrong)
        assert check_gradients(right, a, b, checks=("fd",), seed=seed).ok
        assert calls["forward"] <= 1 + 2 * SCREEN_DIRECTIONS + 4, calls
        together += calls["forward"] == 1 + 2 * SCREEN_DIRECTIONS
        bad, _ = _scaled_product(5e-6, wrong)
        (record,) = check_gradients(bad, a, b, checks=("fd",), seed=seed).records
        assert record.status == "fail" and record.input == f"input {wrong}", \
            (seed, record.message)
    assert together >= 18, together


def _tanh_x_off(at: int, error: float):
    """tanh(x) * x with `error` added to element `at` of its gradient."""
    class Off(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.tanh(x) * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            t = torch.tanh(x)
            gx = (g * ((1 - t * t) * x + t)).clone()
            gx.view(-1)[at] += error
            return gx

    return Off.apply


@pytest.mark.parametrize("shape", [(1,), (5,), (16,), (8, 8), (300,)],
                         ids=["one", "screened-5", "screened-16", "screened-64", "directions"])
def test_a_pass_catches_what_it_says_it_would(shape):
    """A pass's `detects` (any single element off by more than it would have been caught):
    an error of twice that on one element, first, middle or last, fails at every seed. Twice,
    not just above: a disagreement re-measured at smaller steps stands unless a sharp reading
    there agrees, so errors up to twice an allowance can be read as finite-difference error.
    The 300-element input is screened along 2 directions and compared along 3 after a doubt:
    its screen claims the power of those 3, not of an element."""
    for seed in range(10):
        x = torch.randn(shape, generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64, requires_grad=True)
        (right,) = check_gradients(_tanh_x_off(0, 0.0), x, checks=("fd",), seed=seed,
                                   name="tanh-x").records
        assert right.status == "pass", right.message
        for at in {0, x.numel() // 2, x.numel() - 1}:
            (wrong,) = check_gradients(_tanh_x_off(at, 2 * right.detects), x, checks=("fd",),
                                       seed=seed, name="tanh-x").records
            assert wrong.status == "fail", (seed, at, right.detects, wrong.message)


def test_the_screen_direction_sums_to_at_least_one_in_size():
    """probes.balanced flips the first moved component where the sum is under 1 in size (a
    constant error on every element then cannot cancel along the screen's one direction), and
    leaves other directions alone."""
    near_zero = torch.tensor([0.0, 1.2, -1.1, 1.3, -1.4], dtype=torch.float64)
    assert torch.equal(balanced(near_zero.clone()),
                       torch.tensor([0.0, -1.2, -1.1, 1.3, -1.4], dtype=torch.float64))
    far = torch.tensor([1.2, 1.1, -1.0], dtype=torch.float64)
    assert torch.equal(balanced(far.clone()), far)
    gen = torch.Generator().manual_seed(0)
    for n in (2, 3, 8, 1000):
        sums = [float(balanced(signs(n, gen)).sum()) for _ in range(200)]
        assert min(abs(s) for s in sums) >= 1.0, n
