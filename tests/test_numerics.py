"""The numerical engine on its own, with exact values: error estimates, steps, derivatives at
smooth points and kinks, the one tolerance formula, and group testing naming one element."""

import math

import pytest
import torch

from harness.numerics import differences, localize
from harness.numerics.allowance import allowance, element_power
from harness.numerics.probes import Target, sizes
from harness.tolerances import FD_SAFETY, NOISE_SAFETY, TOLERANCES, Tolerance, fd_step

F64 = torch.float64
EPS_THIRD = torch.finfo(F64).eps ** (1 / 3)


def test_an_estimate_is_untrusted_when_truncation_exceeds_rounding_plus_a_hundredth():
    assert differences.untrusted(0.05, 0.01, 1.0) is True  # 0.04 > 0.01 + 0.01
    assert differences.untrusted(0.02, 0.01, 1.0) is False  # 0.01 > 0.02: no
    assert differences.untrusted(0.0, 0.0, 0.0) is False  # a derivative of 0 read exactly
    assert differences.Derivative(1.0, 0.05, rounding=0.01).reliable is False
    assert differences.Derivative(1.0, 0.02, rounding=0.01).reliable is True


def test_max_abs_and_all_finite():
    assert differences.max_abs(torch.tensor([1.0, -3.0, 2.0], dtype=F64)) == 3.0
    assert differences.max_abs(torch.tensor([], dtype=F64)) == 0.0
    assert differences.max_abs(torch.tensor([3 + 4j, 1j])) == 5.0
    assert math.isnan(differences.max_abs(torch.tensor([1.0, math.nan], dtype=F64)))
    assert differences.all_finite(torch.tensor([1.0, -2.0], dtype=F64))
    assert not differences.all_finite(torch.tensor([1.0, math.inf], dtype=F64))


def test_the_step_scales_with_the_input_and_stays_inside_the_smooth_radius():
    x = torch.tensor([2.0, -4.0], dtype=F64)
    u = torch.tensor([1.0, -0.5], dtype=F64)
    assert differences.step_size(x, u, None) == fd_step(F64) * 4.0 / 1.0
    assert differences.step_size(x, u, None, shrink=16.0) == fd_step(F64) * 4.0 / 16.0
    radius = torch.tensor([1e-5, 1.0], dtype=F64)  # x[0] is 1e-5 from a kink
    assert differences.step_size(x, u, radius) == pytest.approx(1e-5 / 4, rel=1e-15)
    small = torch.tensor([1e-3], dtype=F64)  # below 1 the step is not scaled down
    assert differences.step_size(small, torch.ones(1, dtype=F64), None) == EPS_THIRD


def _sum_of_cubes(xs):
    (x,) = xs
    return float((x**3).sum()), float((x**3).abs().sum())


def test_richardson_reads_a_cubic_to_rounding():
    x = torch.tensor([0.5, -1.25, 2.0], dtype=F64)
    u = torch.tensor([1.0, 1.0, -1.0], dtype=F64)
    exact = float((3 * x**2 * u).sum())  # 0.75 + 4.6875 - 12 = -6.5625
    assert exact == -6.5625
    d = differences.directional(_sum_of_cubes, (x,), 0, u)
    assert d.reliable and abs(d.value - exact) <= 1e-9
    assert abs(d.value - exact) <= d.error  # the estimate covers the true error ...
    assert d.error - d.rounding <= 1e-9  # ... and is rounding: h and 2h agree on a cubic


def _abs_sum(xs):
    (x,) = xs
    return float(x.abs().sum()), float(x.abs().sum())


def test_at_a_kink_the_one_sided_slopes_are_read_exactly():
    x, u = torch.zeros(1, dtype=F64), torch.ones(1, dtype=F64)
    right, left = differences.one_sided(_abs_sum, (x,), 0, u)
    assert (right.value, left.value) == (1.0, -1.0)
    assert differences.directional(_abs_sum, (x,), 0, u).value == 0.0  # a subgradient


def test_the_allowance_is_the_tables_formula_element_by_element():
    tol = Tolerance(rtol=1e-3, atol=1e-4, floor=1e-9)
    reference = torch.tensor([2.0, -10.0, 0.0], dtype=F64)
    # rtol*|ref| + atol*max|ref| + floor
    expected = torch.tensor([2e-3, 1e-2, 0.0], dtype=F64) + 1e-4 * 10 + 1e-9
    assert torch.allclose(allowance(reference, tol), expected, rtol=1e-15, atol=0)
    fd_error = torch.tensor([1e-6, 0.0, 2e-6], dtype=F64)
    noise = torch.tensor([0.0, 3e-5, 0.0], dtype=F64)
    assert torch.allclose(allowance(reference, tol, fd_error, noise),
                          expected + FD_SAFETY * fd_error + NOISE_SAFETY * noise,
                          rtol=1e-15, atol=0)
    allowed = allowance(reference, tol)
    actual = reference + torch.tensor([0.0, 5e-3, 0.0], dtype=F64)
    # the largest allowance plus the gap already there
    assert element_power(reference, actual, allowed) == pytest.approx(
        float((allowed + torch.tensor([0.0, 5e-3, 0.0], dtype=F64)).max()), rel=1e-15)


def test_direction_sizes_lie_in_one_to_one_and_a_half():
    s = sizes(1000, torch.Generator().manual_seed(3))
    assert float(s.min()) >= 1.0 and float(s.max()) <= 1.5 and s.dtype == F64


def test_group_testing_names_the_one_wrong_element_in_about_two_log2_n_probes():
    n, wrong = 64, 37
    w = torch.linspace(0.5, 2.0, n, dtype=F64)
    x = torch.linspace(-1.0, 1.0, n, dtype=F64) + 0.01

    def phi(xs):
        (v,) = xs
        return float((v**2 * w).sum()), float((v**2 * w).abs().sum())

    cand = 2 * x * w
    truth = float(cand[wrong])
    cand[wrong] *= 1.5
    target = Target(phi=phi, xs=(x,), pos=0, label="x", cand=cand,
                    tol=TOLERANCES[F64], radius=None, noise=None)
    found = localize.localize(target, torch.Generator().manual_seed(0), probes_max=400,
                              found_max=8)
    assert found.complete and [f.flat for f in found.found] == [wrong]
    (located,) = found.found
    assert located.actual == pytest.approx(1.5 * truth, rel=1e-12)
    assert located.reference == pytest.approx(truth, rel=1e-8)
    assert found.probes <= 4 * math.ceil(math.log2(n)) + 1
